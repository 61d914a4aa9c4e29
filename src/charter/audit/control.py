"""The `audit` control kind: what the audit trail may keep of content, and for how long.

Every request is recorded whatever the charter says (the trail is not optional); this control sets
the form content takes in a record: ``none``, ``hashed`` (a keyed hash, so the same content can
be matched later without being stored) or ``redacted`` (the text as the guards redacted it), and
``retention``: records older than it are summarised by a signed checkpoint and their bodies
removed (``AuditLog.retain``), never silently dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from charter.audit.checkpoint import PublicKeys
from charter.audit.log import AuditLog, RetentionResult
from charter.document.model import AuditControl, Charter, Mode, duration_seconds
from charter.document.source import Path
from charter.errors import CharterError, Conflict
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 6 * 3600.0
"""How often the gateway applies retention: often enough that nothing outlives its period by
much more than this, rarely enough that the verification each run starts with costs little."""


class AuditPolicy:
    """Configures the gateway's records; it judges no request itself."""

    stages: frozenset[Stage] = frozenset()

    def __init__(self, control: AuditControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.content = control.settings.content

    def evaluate(self, ctx: Any) -> None:
        return None


def gaps(settings: Any) -> list[tuple[Path, str]]:
    """Every audit setting is enforced (retention by ``AuditLog.retain``)."""
    return []


def retention_period(charter: Charter) -> str | None:
    """The retention the charter sets: that of its enforced ``audit`` control, the longest if
    several (keeping a record too long is the safe side), or None when no audit control is
    enforced (records are then kept). Shadow and off controls remove nothing."""
    periods = [
        c.settings.retention
        for c in charter.controls
        if isinstance(c, AuditControl) and c.mode is Mode.ENFORCE
    ]
    return max(periods, key=duration_seconds, default=None)


def apply_retention(
    audit: AuditLog,
    retention: str,
    *,
    now: dt.datetime | None = None,
    public_keys: PublicKeys | None = None,
) -> RetentionResult | None:
    """Summarise the records committed more than ``retention`` (e.g. ``"400d"``) before ``now``.

    ``public_keys``: every key the log's checkpoints were signed with (default: the log's own).
    """
    now = dt.datetime.now(dt.UTC) if now is None else now
    cutoff = now - dt.timedelta(seconds=duration_seconds(retention))
    return audit.retain(cutoff, retention=retention, public_keys=public_keys)


async def run_retention(
    audit: AuditLog,
    charter: Charter,
    every_s: float = RETENTION_EVERY_S,
    *,
    public_keys: PublicKeys | None = None,
) -> None:
    """Apply the charter's retention now and then every ``every_s`` seconds, until cancelled.

    Meant for the gateway's lifespan (next to the approval sweeper). A failed run is logged and
    retried at the next interval; requests are never affected. Replicas sharing a database take
    turns: a run that finds another holding the retention lock is skipped.
    """
    retention = retention_period(charter)
    if retention is None:
        return
    while True:
        try:
            result = await asyncio.to_thread(
                apply_retention, audit, retention, public_keys=public_keys
            )
        except Conflict as exc:
            if exc.details.get("code") != "retention_busy":
                raise
            # Another replica holds the retention lock: it is doing this run's work.
            log.info("audit retention (%s) skipped: %s", retention, exc.message)
        except CharterError as exc:
            log.warning("audit retention (%s) did not run: %s", retention, exc)
        else:
            if result is not None:
                log.info(
                    "audit retention (%s): records [0, %d) summarised by retention record %d",
                    retention,
                    result.pruned_before,
                    result.record_index,
                )
        await asyncio.sleep(every_s)


register("audit", AuditPolicy, gaps=gaps)
