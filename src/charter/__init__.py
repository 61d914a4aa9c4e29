"""Charter: the decisions an organization made about its AI, and the controls that enforce them."""

__version__ = "0.1.0"
