"""`charter report`: the evidence report of a period, as Markdown, HTML or JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from charter.audit.log import stored_checkpoints, stored_leaf_bytes
from charter.audit.records import AuditRecord
from charter.document.loader import load_charter
from charter.document.model import Charter
from charter.errors import ConfigurationError, InvalidRequest
from charter.options import setting_option as setting
from charter.reports.catalog import load_mapping
from charter.reports.evidence import EvidenceReport, build_report
from charter.reports.render import FORMATS, format_for, render
from charter.settings import resolve
from charter.storage import Store, open_store


def read_records(store: Store) -> list[AuditRecord]:
    """Every record of the audit log, parsed, in order."""
    return [AuditRecord.from_dict(json.loads(b)) for b in stored_leaf_bytes(store)]


def open_state(flags: dict[str, Any]) -> tuple[Charter, str, Store]:
    """The charter (refusing an invalid one), its version, and the migrated store."""
    settings = resolve(flags)
    path = settings.charter
    if not Path(path).exists():
        raise ConfigurationError(
            f"charter file {path} does not exist", hint="pass --charter FILE or set CHARTER_CHARTER"
        )
    loaded = load_charter(path)
    charter = loaded.require()
    store = open_store(settings.database)
    store.migrate()
    return charter, loaded.version or "", store


def parse_moment(text: str, *, end_of_day: bool = False) -> dt.datetime:
    """A date (YYYY-MM-DD, UTC; with ``end_of_day`` the day after it) or an RFC 3339 time."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return moment + dt.timedelta(days=1) if end_of_day else moment
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{text!r} is not a date", hint="write 2026-11-01 or 2026-11-01T09:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def make_report(
    charter: Charter,
    version: str,
    store: Store,
    start: dt.datetime,
    end: dt.datetime,
    *,
    mapping: dict[str, list[str]] | None = None,
) -> EvidenceReport:
    """The evidence report of ``[start, end)`` from what ``store`` holds."""
    return build_report(
        charter,
        version,
        read_records(store),
        stored_checkpoints(store),
        start,
        end,
        mapping=mapping,
    )


def write_report(report: EvidenceReport, output: str, fmt: str | None = None) -> str:
    """Write ``report`` to ``output`` in ``fmt`` (from the file name if not given); the format."""
    chosen = fmt or format_for(output)
    Path(output).write_text(render(report, chosen), encoding="utf-8")
    return chosen


@click.command("report")
@click.option("--from", "start", required=True, help="First day (YYYY-MM-DD, UTC) or time.")
@click.option(
    "--to", "end", default=None, help="Last day, included (YYYY-MM-DD) or time. [default: now]"
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="markdown, html or json [default: from the -o file name, else markdown]",
)
@click.option("-o", "--output", default=None, help="Write to this file instead of stdout.")
@click.option(
    "--mapping",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A YAML file relating decisions to framework items (decisions: {id: [items]}).",
)
@setting("charter")
@setting("database")
def report(
    start: str,
    end: str | None,
    fmt: str | None,
    output: str | None,
    mapping: str | None,
    **flags: Any,
) -> None:
    """Evidence of what each decision's controls did in a period, from the audit trail.

    Per decision: its owner, its controls and how often each ruled with what verdicts, eval
    runs, approvals, drift alerts; the signed checkpoints covering the period; the items of the
    frameworks the charter names, with or without evidence; usage per team and use case.

    \b
    Example:
      charter report --from 2026-11-01 --to 2026-11-30 -o evidence-2026-11.html
      charter report --from 2026-11-01 --format json | jq '.frameworks'
    """
    since = parse_moment(start)
    until = parse_moment(end, end_of_day=True) if end else dt.datetime.now(dt.UTC)
    charter, version, store = open_state(flags)
    try:
        built = make_report(
            charter,
            version,
            store,
            since,
            until,
            mapping=load_mapping(mapping) if mapping else None,
        )
    finally:
        store.close()
    if output:
        chosen = write_report(built, output, fmt)
        click.echo(f"wrote {output} ({chosen}): {built.records} records", err=True)
    else:
        click.echo(render(built, fmt or "markdown"), nl=False)
