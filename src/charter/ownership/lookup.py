"""What every ownership lookup is: an async question with a bounded answer time."""

from __future__ import annotations

from typing import Protocol


class LookupFailed(Exception):
    """The lookup could not say whether the resource is owned; the message says what happened.

    Never raised past the resolver: it becomes an ``OwnershipAnswer`` with ``owned=None``,
    decided by the policy's ``on_error``.
    """


class Lookup(Protocol):
    """One configured ownership lookup (``ownership.http`` or ``ownership.sql``)."""

    source: str  # what is asked, for reasons and evidence; never a secret
    timeout_s: float
    cache_ttl_s: float
    max_concurrency: int

    async def owns(self, subject: str, resource: str) -> tuple[bool, str]:
        """True or False with what the source said, or ``LookupFailed``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
