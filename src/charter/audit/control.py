"""The `audit` control kind: what the audit trail may keep of content, and for how long.

Every request is recorded whatever the charter says (the trail is not optional); this control sets
the form content takes in a record: ``none``, ``hashed`` (a keyed hash, so the same content can
be matched later without being stored) or ``redacted`` (the text as the guards redacted it).
"""

from __future__ import annotations

from typing import Any

from charter.document.model import AuditControl, Charter
from charter.document.source import Path
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage


class AuditPolicy:
    """Configures the gateway's records; it judges no request itself."""

    stages: frozenset[Stage] = frozenset()

    def __init__(self, control: AuditControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.content = control.settings.content

    def evaluate(self, ctx: Any) -> None:
        return None


def gaps(settings: Any) -> list[tuple[Path, str]]:
    """Retention summaries are not enforced yet: a retention shorter than forever is refused."""
    return (
        [
            (
                ("settings", "retention"),
                "retention summaries are not enforced yet; remove "
                "`retention` (records are kept) until they are",
            )
        ]
        if "retention" in (settings.model_fields_set)
        else []
    )


register("audit", AuditPolicy, gaps=gaps)
