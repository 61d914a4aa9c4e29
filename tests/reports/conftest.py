"""The observed gateway fixture, shared with the observability tests."""

from tests.observability.conftest import observed_factory

__all__ = ["observed_factory"]
