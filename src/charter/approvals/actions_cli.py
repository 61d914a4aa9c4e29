"""`charter actions` and `charter breakers`: staged and reversible actions and per-tool circuit
breakers from a terminal, a thin layer over ``ActionService`` that audits every step it takes.

It opens the gateway's database and audit keys (``--database``, ``--data-dir``); executing and
reverting call the webhooks the charter names, so their secret variables must be set here too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from charter.settings import BY_NAME, resolve
from charter.storage.base import ACTION_STATUSES

if TYPE_CHECKING:
    from charter.approvals.service import ActionService
    from charter.storage.base import ActionRow

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

console = Console(highlight=False)


def _setting(name: str) -> Callable[[F], F]:
    setting = BY_NAME[name]
    return click.option(
        setting.flag,
        name,
        default=None,
        envvar=setting.env,
        show_envvar=True,
        help=f"{setting.help} [default: {setting.default}]",
    )


def _state_options(fn: F) -> F:
    for name in ("data_dir", "redis", "database", "charter"):
        fn = _setting(name)(fn)
    return fn


def run_with_service(
    flags: dict[str, Any], work: Callable[[ActionService], Coroutine[Any, Any, T]]
) -> T:
    """Run ``work`` with an ``ActionService`` on the settings in ``flags``; every step it takes
    is written to the audit trail (committed before this returns)."""
    from charter.approvals.service import ActionService
    from charter.audit.log import AuditLog, open_keys
    from charter.document.loader import load_charter
    from charter.gateway.actions import audit_listener
    from charter.policy.engine import Engine
    from charter.storage import open_store

    settings = resolve(flags)
    charter = load_charter(settings.charter).require()
    engine = Engine(charter)
    store = open_store(settings.database)

    async def go(audit: AuditLog) -> T:
        counters = None
        if settings.redis:
            from charter.counters.redis import RedisCounters

            counters = RedisCounters(settings.redis)
        listener = audit_listener(audit, engine.version)
        service = ActionService(engine, store, counters, on_event=listener)
        try:
            return await work(service)
        finally:
            await service.aclose()
            if counters is not None:
                await counters.aclose()

    try:
        store.migrate()
        audit = AuditLog(store, open_keys(settings.data_dir))
        try:
            return asyncio.run(go(audit))
        finally:
            audit.close()  # commits the records queued by the steps above
    finally:
        store.close()


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _print_row(row: ActionRow) -> None:
    from charter.approvals.service import action_dict

    _print_json(action_dict(row))


def _when(row: ActionRow) -> str:
    return _minute(row.updated_at.isoformat())


def _minute(iso: str | None) -> str:
    """A stored time as a table shows it: UTC, to the minute."""
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


# --- charter actions -----------------------------------------------------------------------------


@click.group()
def actions() -> None:
    """Tool calls Charter allowed or held: list and show them, execute an approved one through
    its webhook, revert an executed one."""


@actions.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(ACTION_STATUSES),
    help="Only actions with this status (repeat for several).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_state_options
def list_cmd(statuses: tuple[str, ...], limit: int, fmt: str, **flags: Any) -> None:
    """List actions, newest first (holds that lapsed are expired or abandoned first).

    \b
    Example:
      charter actions list --status approved --status executed
    """
    from charter.approvals.service import action_dict

    async def work(service: ActionService) -> list[ActionRow]:
        import anyio.to_thread

        await service.expire_due()
        rows = partial(service.store.list_actions, list(statuses) or None, limit)
        return await anyio.to_thread.run_sync(rows)

    rows = run_with_service(flags, work)
    if fmt == "json":
        _print_json([action_dict(r) for r in rows])
        return
    table = Table(title=f"{len(rows)} actions (`charter actions show ID` for the details)")
    table.add_column("action", no_wrap=True)  # ids are copied from here: never folded
    for column in ("status", "tool", "subject", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.id, row.status, row.tool, row.subject or "", _when(row))
    console.print(table)


@actions.command("show")
@click.argument("action_id")
@_state_options
def show_cmd(action_id: str, **flags: Any) -> None:
    """Show one action (an act_... id, or the apr_... id of its approval) with its outcome.

    \b
    Example:
      charter actions show act_Xq3...
    """

    async def work(service: ActionService) -> ActionRow:
        if action_id.startswith("apr_"):
            return await service.get_approval(action_id)
        return await service.get(action_id)

    _print_row(run_with_service(flags, work))


@actions.command("execute")
@click.argument("action_id")
@_state_options
def execute_cmd(action_id: str, **flags: Any) -> None:
    """Execute an approved action through its tool's `execute` webhook and record the outcome.

    The action id is the Idempotency-Key of every attempt, so running this again after a failure
    never makes a receiver that honours the key act twice. Exits 3 when the webhook failed (the
    action stays approved, to be retried before its hold lapses).

    \b
    Example:
      charter actions execute act_Xq3...
    """
    from charter.gateway.actions import require_executed

    async def work(service: ActionService) -> ActionRow:
        await service.expire_due()  # an approval whose hold lapsed is abandoned, not run late
        return await service.execute(action_id)

    row = require_executed(run_with_service(flags, work))
    console.print(f"executed {row.id} ({row.tool})")
    _print_row(row)


@actions.command("revert")
@click.argument("action_id")
@click.option("--by", "by", required=True, help="Your principal id (admin, or a reviewer).")
@click.option("--reason", required=True, help="Why it is undone (kept with the action).")
@_state_options
def revert_cmd(action_id: str, by: str, reason: str, **flags: Any) -> None:
    """Revert an executed action of a reversible tool, through its compensating call if set.

    \b
    Example:
      charter actions revert act_Xq3... --by alice --reason "refunded twice by mistake"
    """
    row = run_with_service(flags, lambda s: s.revert(action_id, by, reason))
    console.print(f"reverted {row.id} ({row.tool})")
    _print_row(row)


# --- charter breakers ----------------------------------------------------------------------------


@click.group()
def breakers() -> None:
    """Circuit breakers: pause a tool for everyone, and let it run again, with a reason."""


@breakers.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_state_options
def breakers_list_cmd(fmt: str, **flags: Any) -> None:
    """List every governed tool's breaker: its limit, and whether (by whom, why) it is tripped.

    \b
    Example:
      charter breakers list
    """
    from charter.gateway.actions import breaker_states

    async def work(service: ActionService) -> list[dict[str, Any]]:
        return breaker_states(service.charter, await service.breakers())

    states = run_with_service(flags, work)
    if fmt == "json":
        _print_json(states)
        return
    table = Table(title=f"{sum(s['tripped'] for s in states)} of {len(states)} tools paused")
    for column in ("tool", "state", "trips at", "by", "when (UTC)", "reason"):
        table.add_column(column, overflow="fold")
    for state in states:
        limit = state["configured"]
        table.add_row(
            state["tool"],
            "TRIPPED" if state["tripped"] else "closed",
            f"> {limit['max_executed']} in {limit['window']}" if limit else "manual only",
            state["by"] or "",
            _minute(state["at"]),
            state["reason"] or "",
        )
    console.print(table)


def _set_breaker(tool: str, by: str, reason: str, flags: dict[str, Any], *, trip: bool) -> None:
    async def work(service: ActionService) -> Any:
        act = service.trip if trip else service.reset
        return await act(tool, by, reason)

    row = run_with_service(flags, work)
    console.print(
        f"{'tripped' if trip else 'reset'} the breaker of {row.tool}: "
        + (f"every {row.tool} call is denied until it is reset" if trip else "it runs again")
    )


@breakers.command("trip")
@click.argument("tool")
@click.option("--by", "by", required=True, help="Your principal id (an admin).")
@click.option("--reason", required=True, help="Why the tool is paused (kept, and audited).")
@_state_options
def trip_cmd(tool: str, by: str, reason: str, **flags: Any) -> None:
    """Pause TOOL for everyone: every call is denied, naming the breaker, until it is reset.

    \b
    Example:
      charter breakers trip issue_refund --by alice --reason "refund fraud ring under review"
    """
    _set_breaker(tool, by, reason, flags, trip=True)


@breakers.command("reset")
@click.argument("tool")
@click.option("--by", "by", required=True, help="Your principal id (an admin).")
@click.option("--reason", required=True, help="Why the tool may run again (kept, and audited).")
@_state_options
def reset_cmd(tool: str, by: str, reason: str, **flags: Any) -> None:
    """Let TOOL run again after its breaker tripped.

    \b
    Example:
      charter breakers reset issue_refund --by alice --reason "spike was the spring sale"
    """
    _set_breaker(tool, by, reason, flags, trip=False)
