"""Console tokens in the store (both backends) and `charter users`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from charter.cli import CharterGroup
from charter.console.cli import users
from charter.errors import Conflict
from charter.storage import Store, open_store
from charter.storage.base import KeyRow

NOW = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
EXAMPLE = "examples/support-desk/charter.yaml"


def token(n: int, principal: str = "ravi") -> KeyRow:
    return KeyRow(f"ct_{n}", principal, f"{n:064x}", "ct-charter-abcd", f"token {n}", NOW)


def test_console_tokens_are_stored_found_listed_and_revoked(store: Store) -> None:
    store.create_console_token(token(1))
    store.create_console_token(token(2, "alice"))
    with pytest.raises(Conflict):
        store.create_console_token(token(1))
    assert store.find_console_token(f"{1:064x}") == token(1)
    assert store.find_console_token("0" * 64) is None
    assert [t.id for t in store.list_console_tokens()] == ["ct_1", "ct_2"]
    assert [t.id for t in store.list_console_tokens("alice")] == ["ct_2"]
    assert store.revoke_console_token("ct_1", NOW) is True
    assert store.revoke_console_token("ct_1", NOW) is False
    found = store.find_console_token(f"{1:064x}")
    assert found is not None and not found.active and found.revoked_at == NOW
    assert store.list_keys() == []  # console tokens are not virtual keys


def test_charter_users_token_list_and_revoke(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/charter.db"
    runner = CliRunner()
    flags = ["--charter", EXAMPLE, "--database", database]
    issued = runner.invoke(users, ["token", "ravi", "--description", "laptop", *flags])
    assert issued.exit_code == 0, issued.output
    secret = issued.output.strip().splitlines()[-1]
    assert secret.startswith("ct-charter-")
    listed = runner.invoke(users, ["list", "--database", database])
    assert "ravi" in listed.output and secret not in listed.output
    with open_store(database) as store:
        (row,) = store.list_console_tokens("ravi")
    revoked = runner.invoke(users, ["revoke", row.id, "--database", database])
    assert revoked.exit_code == 0 and row.id in revoked.output
    charter = CharterGroup("charter", commands={"users": users})  # as cli.py registers it
    refused = runner.invoke(charter, ["users", "token", "support-bot", *flags])
    assert refused.exit_code != 0 and "not a user" in refused.output
