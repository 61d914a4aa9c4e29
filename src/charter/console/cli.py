"""`charter users`: issue, list and revoke the console sign-in tokens of the charter's users."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from charter.settings import BY_NAME, resolve

F = TypeVar("F", bound=Callable[..., Any])

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


@contextmanager
def _store(flags: dict[str, Any]) -> Iterator[Any]:
    from charter.storage import open_store

    store = open_store(resolve(flags).database)
    try:
        store.migrate()
        yield store
    finally:
        store.close()


@click.group("users")
def users() -> None:
    """Console sign-in tokens for the charter's users (roles come from the charter)."""


@users.command("token")
@click.argument("principal")
@click.option("--description", default="", help="What the token is for (shown in lists).")
@_setting("charter")
@_setting("database")
def token_cmd(principal: str, description: str, **flags: Any) -> None:
    """Issue a console token for a user principal with roles; it is printed once.

    \b
    Example:
      charter users token ravi --charter examples/support-desk/charter.yaml
    """
    from charter.console.auth import issue_token
    from charter.document.loader import load_charter

    charter = load_charter(resolve(flags).charter).require()
    with _store(flags) as store:
        token, row = issue_token(store, charter, principal, description)
    roles = next(p.roles for p in charter.principals if p.id == principal)
    console.print(
        f"console token {row.id} for {principal} (roles: {', '.join(map(str, roles))}); "
        "shown once, only its hash is kept:",
        highlight=False,
    )
    click.echo(token)


@users.command("list")
@click.option("--principal", default=None, help="Only this user's tokens.")
@_setting("database")
def list_cmd(principal: str | None, **flags: Any) -> None:
    """List console tokens, oldest first (never the tokens themselves).

    \b
    Example:
      charter users list --principal ravi
    """
    with _store(flags) as store:
        rows = store.list_console_tokens(principal)
    table = Table(title=f"{len(rows)} console tokens")
    for column in ("id", "user", "starts with", "description", "issued", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.id,
            row.principal_id,
            row.prefix + "…",
            row.description,
            row.created_at.isoformat(timespec="seconds"),
            row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
        )
    console.print(table)


@users.command("revoke")
@click.argument("token_id")
@_setting("database")
def revoke_cmd(token_id: str, **flags: Any) -> None:
    """Revoke a console token; sessions signed in with it end at their next request.

    \b
    Example:
      charter users revoke ct_3f9a0c1d2e4b
    """
    from charter.errors import NotFound

    with _store(flags) as store:
        if not store.revoke_console_token(token_id, dt.datetime.now(dt.UTC)):
            raise NotFound(
                f"no active console token {token_id!r}", hint="list them with `charter users list`"
            )
    console.print(f"revoked {token_id}")
