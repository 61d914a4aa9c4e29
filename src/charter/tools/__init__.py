"""Tool policies: what the model may do with a tool on its own, what needs a person, what never.

A ``tool_policy`` control is evaluated at ``Stage.TOOL_CALL`` on a ``RequestContext`` whose
``tool_call`` is set; its rate caps are reserved and confirmed by ``charter.approvals``. A tool
that no ``tool_policy`` names is not governed and passes through (see docs/approvals.md).
"""

from __future__ import annotations

from charter.policy.registry import register
from charter.tools.policy import (
    SUM_SCALE,
    RateClaim,
    RuleResult,
    ToolPolicyHandler,
    address_domains,
)

register("tool_policy", ToolPolicyHandler)

__all__ = ["SUM_SCALE", "RateClaim", "RuleResult", "ToolPolicyHandler", "address_domains"]
