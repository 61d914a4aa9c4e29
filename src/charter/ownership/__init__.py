"""Ownership lookups Charter runs itself: is order 4821 this customer's, per the system that knows?

A ``tool_policy`` may say where ownership truth lives (``ownership.http`` or ``ownership.sql``)
instead of trusting a list the caller supplies (``ownership.context``). The service layer
(``charter.approvals.ActionService.authorize``, the eval runner) calls
``OwnershipResolver.with_answers`` before the policy engine, which decides on the answers and
denies a call whose lookup was not run. See docs/approvals.md, "Ownership lookups".
"""

from __future__ import annotations

from charter.ownership.lookup import Lookup, LookupFailed
from charter.ownership.resolver import AnswerCache, OwnershipResolver

__all__ = ["AnswerCache", "Lookup", "LookupFailed", "OwnershipResolver"]
