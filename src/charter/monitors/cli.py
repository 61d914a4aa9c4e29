"""`charter status`: drift monitors, recent alerts and usage, recomputed from the audit trail.

Status reads the audit log, not a running gateway, so it works from any machine that reaches the
database and says the same for every replica: it replays the verdict records of each monitor's
windows through the same drift code the gateway runs, and lists the alerts the log recorded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charter.audit.records import AuditRecord, RecordKind
from charter.document.model import Charter, duration_seconds
from charter.errors import InvalidRequest
from charter.monitors.drift import DriftMonitor, Reading
from charter.monitors.observation import Observation
from charter.options import setting_option as setting
from charter.policy.runtime import principal_chain
from charter.reports.cli import open_state, read_records
from charter.reports.usage import usage_rows
from charter.storage import Store


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def replay(charter: Charter, records: Sequence[AuditRecord], now: float) -> list[Reading]:
    """Each monitor's current readings, recomputed from the verdict records."""
    drift = DriftMonitor(charter)
    if not drift.monitors:
        return []
    horizon = now - max(m.window_s + m.baseline_s + m.width for m in drift.monitors)
    chains: dict[str, tuple[str, ...]] = {}
    for record in records:
        principal = record.principal or ""
        if principal not in chains:
            chains[principal] = principal_chain(charter, principal) if principal else ()
        obs = Observation.from_record(record, chains[principal])
        if obs is not None and horizon <= obs.at <= now:
            drift.add(obs)
    return drift.readings(now)


def print_status(
    console: Console,
    charter: Charter,
    version: str,
    store: Store,
    *,
    since: str = "1d",
    now: float | None = None,
) -> None:
    """Print the status tables: monitors, recent drift alerts, usage since ``since``."""
    at = time.time() if now is None else now
    try:
        start = at - duration_seconds(since)
    except ValueError:
        raise InvalidRequest(
            f"--since {since!r} is not a duration", hint="write e.g. 1h, 1d or 7d"
        ) from None
    records = read_records(store)
    latest = store.latest_checkpoint()
    console.print(
        f"[bold]{escape(charter.organization)}[/] charter {version.removeprefix('sha256:')[:12]}: "
        f"{len(records)} audit records, latest checkpoint "
        + (f"at {latest.size}" if latest else "none")
    )
    readings = replay(charter, records, at)
    monitors = {c.id: c for c in charter.controls if c.kind == "monitor"}
    table = Table(title="drift monitors")
    for column in ("monitor", "statistic", "series", "now", "before", "value", "threshold"):
        table.add_column(column)
    table.add_column("state")
    colours = {"ok": "green", "drift": "bold red", "waiting": "dim"}
    for r in readings:
        watched = monitors[r.monitor].settings.control
        table.add_row(
            r.monitor,
            r.statistic + (f" ({watched})" if watched else ""),
            r.series,
            f"{_fmt(r.current)} (n={r.current_n})",
            f"{_fmt(r.baseline)} (n={r.baseline_n})",
            _fmt(r.value),
            _fmt(r.threshold),
            f"[{colours[r.state]}]{r.state}[/]",
        )
    if not monitors:
        console.print("no monitor controls in this charter")
    elif not readings:
        console.print("monitors have seen no traffic yet")
    else:
        console.print(table)
    alerts = [r for r in records if r.kind is RecordKind.DRIFT_ALERT][-10:]
    if alerts:
        alert_table = Table(title="recent drift alerts")
        for column in ("index", "time", "monitor", "alert"):
            alert_table.add_column(column, overflow="fold")
        for record in alerts:
            alert_table.add_row(
                str(record.index), record.time, record.control_ids[0], escape(record.reason or "")
            )
        console.print(alert_table)
    else:
        console.print("no drift alerts recorded")
    recent = []
    for record in records:
        principal = record.principal or ""
        obs = Observation.from_record(
            record, principal_chain(charter, principal) if principal else ()
        )
        if obs is not None and start <= obs.at <= at:
            recent.append(obs)
    usage = Table(title=f"usage in the last {since}")
    for column in ("team", "use case", "requests", "answered without intervention", "cost"):
        usage.add_column(column)
    for row in usage_rows(charter, recent):
        usage.add_row(
            row.team,
            row.use_case,
            str(row.requests),
            f"{row.answered_clean} ({row.clean_share:.0%})",
            f"${row.cost_micro_usd / 1e6:.6f}",
        )
    console.print(usage if recent else f"no requests in the last {since}")


@click.command("status")
@click.option("--since", default="1d", show_default=True, help="Usage over this duration.")
@click.option("--width", default=None, type=int, help="Console width (default: the terminal's).")
@setting("charter")
@setting("database")
def status(since: str, width: int | None, **flags: Any) -> None:
    """Drift monitors against their thresholds, recent drift alerts, and usage.

    \b
    Example:
      charter status --charter examples/support-desk/charter.yaml
      charter status --since 7d
    """
    charter, version, store = open_state(flags)
    try:
        print_status(Console(highlight=False, width=width), charter, version, store, since=since)
    finally:
        store.close()


__all__ = ["print_status", "replay", "status"]
