"""`charter approvals`: list, show, approve and reject what waits for a person (tool calls sent
to review and content a guard escalated) from a terminal.

A thin layer over ``ActionService``. It opens the same database and audit keys as the gateway
(``--database``, ``--data-dir``) and writes every decision to the audit trail; with ``--redis``
it also gives a rejected action's reservation back at once, and without it (an embedded gateway
keeps its counters in its own process) the gateway's sweeper does within its sweep interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from charter.options import setting_option as _setting

if TYPE_CHECKING:
    from charter.approvals.service import ActionService
    from charter.storage.base import ActionRow

T = TypeVar("T")

console = Console(highlight=False)


def _with_service(
    flags: dict[str, Any], work: Callable[[ActionService], Coroutine[Any, Any, T]]
) -> T:
    from charter.approvals.actions_cli import run_with_service

    return run_with_service(flags, work)  # every step is an audit record, signed as the gateway's


def _print_row(row: ActionRow) -> None:
    from charter.approvals.service import action_dict

    click.echo(json.dumps(action_dict(row), indent=2, ensure_ascii=False))


@click.group()
def approvals() -> None:
    """Human checkpoints: the tool calls and the escalated content waiting for a person."""


@approvals.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_setting("charter")
@_setting("database")
@_setting("data_dir")
@_setting("redis")
def list_cmd(fmt: str, **flags: Any) -> None:
    """List pending approvals, newest first (overdue ones are expired first: default deny).

    \b
    Example:
      charter approvals list --charter examples/support-desk/charter.yaml
    """
    from charter.approvals.service import action_dict

    rows = _with_service(flags, lambda s: s.list_pending())
    if fmt == "json":
        click.echo(json.dumps([action_dict(r) for r in rows], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} pending approvals")
    for column in ("approval", "tool", "arguments", "subject", "requested by", "why", "deadline"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.approval_id or "",
            row.tool,  # "(input content)" for escalated content; its excerpt is in `show`
            row.excerpt[:200] if row.is_content else row.arguments_json,
            row.subject or "",
            row.principal_id,
            row.reason,
            row.deadline.isoformat(timespec="seconds") if row.deadline else "",
        )
    console.print(table)


@approvals.command("show")
@click.argument("approval_id")
@_setting("charter")
@_setting("database")
@_setting("data_dir")
@_setting("redis")
def show_cmd(approval_id: str, **flags: Any) -> None:
    """Show one approval: the proposal, its arguments, the excerpt, the decision behind it.

    \b
    Example:
      charter approvals show apr_Xq3...
    """
    _print_row(_with_service(flags, lambda s: s.get_approval(approval_id)))


@approvals.command("approve")
@click.argument("approval_id")
@click.option("--as", "reviewer", required=True, help="Your principal id (it must hold a role).")
@click.option("--reason", required=True, help="Why you approve it (kept with the decision).")
@_setting("charter")
@_setting("database")
@_setting("data_dir")
@_setting("redis")
def approve_cmd(approval_id: str, reviewer: str, reason: str, **flags: Any) -> None:
    """Approve a pending action or escalated content. You cannot approve your own request.

    \b
    Example:
      charter approvals approve apr_Xq3... --as ravi --reason "invoice matches"
    """
    row = _with_service(flags, lambda s: s.approve(approval_id, reviewer, reason))
    console.print(f"approved {approval_id} ({row.tool}); status {row.status}")
    if row.is_content:
        console.print(
            f"the caller may now re-send the same request with X-Charter-Approval: {approval_id} "
            f"until {row.hold_until.isoformat(timespec='seconds')}"
        )
    _print_row(row)


@approvals.command("reject")
@click.argument("approval_id")
@click.option("--as", "reviewer", required=True, help="Your principal id (it must hold a role).")
@click.option("--reason", required=True, help="Why you reject it (kept with the decision).")
@_setting("charter")
@_setting("database")
@_setting("data_dir")
@_setting("redis")
def reject_cmd(approval_id: str, reviewer: str, reason: str, **flags: Any) -> None:
    """Reject a pending action; it will not run.

    \b
    Example:
      charter approvals reject apr_Xq3... --as ravi --reason "order already refunded"
    """
    row = _with_service(flags, lambda s: s.reject(approval_id, reviewer, reason))
    console.print(f"rejected {approval_id} ({row.tool})")
