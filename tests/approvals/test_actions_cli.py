"""`charter actions list/show/execute/revert` and `charter breakers list/trip/reset` against the
database a gateway shares, with a real webhook receiver on loopback; every step is audited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from charter.approvals.actions_cli import actions, breakers
from charter.cli import CharterGroup, main
from charter.document.loader import load_charter
from charter.storage import open_store
from tests.gateway.test_actions_more import (
    SECRETS,
    Outbox,
    audit_records,
    running_outbox,
    staged_charter,
)

from .conftest import ORDERS, make_service


@click.group(cls=CharterGroup)
def cli() -> None:
    """The action and breaker commands on a group of their own, as `charter` registers them."""


cli.add_command(actions)
cli.add_command(breakers)


class Terminal:
    """One charter, database and audit key directory, and the commands run against them."""

    def __init__(self, tmp_path: Path, outbox: Outbox) -> None:
        self.charter = staged_charter(tmp_path, outbox.url, attempts=1)
        self.db = f"sqlite:///{tmp_path}/charter.db"
        self.state = str(tmp_path / "state")
        with open_store(self.db) as store:
            store.migrate()

    def run(self, *args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
        flags = ["--charter", str(self.charter), "--database", self.db, "--data-dir", self.state]
        result = CliRunner().invoke(cli, [*args, *flags], env=env or dict(SECRETS))
        return result.exit_code, " ".join(result.output.split())  # rich wraps at 80 columns

    def seed(self, tool: str, arguments: Mapping[str, object], *, approve: bool = False) -> str:
        """An action as the gateway would have stored it (authorized, or approved by ravi)."""
        with open_store(self.db) as store:
            service = make_service(load_charter(self.charter).require(), store, env=SECRETS)

            async def go() -> str:
                auth = await service.authorize(
                    "support-bot", tool, arguments, subject="cust-1", attributes=ORDERS
                )
                assert auth.id is not None
                if approve:
                    assert auth.approval_id is not None
                    await service.approve(auth.approval_id, "ravi", "checked")
                elif auth.approval_id is None:
                    await service.executed(auth.id)
                await service.aclose()
                return auth.id

            return asyncio.run(go())

    def decide(self, tool: str, arguments: Mapping[str, object]) -> tuple[str, tuple[str, ...]]:
        """What the gateway would decide on this call now: the decision and its reasons."""
        with open_store(self.db) as store:
            service = make_service(load_charter(self.charter).require(), store, env=SECRETS)

            async def go() -> tuple[str, tuple[str, ...]]:
                auth = await service.authorize(
                    "support-bot", tool, arguments, subject="cust-2", attributes=ORDERS
                )
                await service.aclose()
                return auth.decision, auth.reasons

            return asyncio.run(go())

    def status(self, action_id: str) -> str:
        with open_store(self.db) as store:
            row = store.get_action(action_id)
            assert row is not None
            return row.status

    def audit(self, action_id: str | None = None, at_least: int = 1) -> list[Any]:
        with open_store(self.db) as store:
            return audit_records(store, action_id, at_least=at_least)


EMAIL = {"to_email": "jane.doe@customer.example", "subject": "Your parcel", "message": "Shipped."}


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    with running_outbox() as box:
        yield box


@pytest.fixture
def term(tmp_path: Path, outbox: Outbox) -> Terminal:
    return Terminal(tmp_path, outbox)


def test_execute_an_approved_email_once_then_list_and_show_it(
    term: Terminal, outbox: Outbox
) -> None:
    outbox.refuse = 1  # the relay refused it when ravi approved it: still approved, not sent
    action_id = term.seed("send_email", EMAIL, approve=True)
    assert term.status(action_id) == "approved" and outbox.sent("/outbox") == []

    code, out = term.run("actions", "list", "--status", "approved", "--format", "json")
    assert code == 0, out
    [listed] = json.loads(out)
    assert (listed["id"], listed["reviewer"]) == (action_id, "ravi")

    code, out = term.run("actions", "execute", action_id)
    assert code == 0, out
    assert f"executed {action_id} (send_email)" in out
    assert outbox.calls == [("/outbox", action_id)] * 2  # the refused call and this one: one key
    [mail] = outbox.sent("/outbox")
    assert mail["arguments"] == EMAIL

    code, out = term.run("actions", "execute", action_id)
    assert code == 1 and "was already executed" in out and "Traceback" not in out
    assert len(outbox.calls) == 2 and term.status(action_id) == "executed"

    code, out = term.run("actions", "show", action_id)
    assert code == 0, out
    shown = json.loads(out)
    assert shown["status"] == "executed" and shown["outcome"]["execute"]["status"] == 200
    code, out = term.run("actions", "show", shown["approval_id"])
    assert code == 0 and json.loads(out)["id"] == action_id
    code, out = term.run("actions", "list")
    assert code == 0 and "1 actions" in out and action_id in out and "send_email" in out

    [record] = term.audit(action_id)  # the CLI's own step, in the same tamper-evident log
    assert record["details"] == {
        "event": "executed",
        "action_id": action_id,
        "tool": "send_email",
        "status": "executed",
        "reviewer": "ravi",
        "webhook_status": 200,
        "attempts": 1,
    }
    verified = CliRunner().invoke(
        main, ["audit", "verify", "--database", term.db, "--data-dir", term.state]
    )
    assert verified.exit_code == 0, verified.output


def test_a_refused_execution_exits_3_and_leaves_the_action_approved(
    term: Terminal, outbox: Outbox
) -> None:
    outbox.refuse = 2
    action_id = term.seed("send_email", EMAIL, approve=True)
    code, out = term.run("actions", "execute", action_id)
    assert code == 3, out
    assert "failed after 1 attempts (422" in out and "still approved" in out
    assert term.status(action_id) == "approved" and outbox.sent("/outbox") == []


def test_executing_without_the_webhook_secret_says_which_variable(term: Terminal) -> None:
    action_id = term.seed("send_email", EMAIL, approve=False)
    code, out = term.run("actions", "execute", action_id, env={**SECRETS, "OUTBOX_HOOK_KEY": None})
    assert code == 3 and "$OUTBOX_HOOK_KEY, which is not set" in out
    assert "export OUTBOX_HOOK_KEY=" in out
    assert term.status(action_id) == "pending"


def test_revert_a_refund_through_its_compensating_call(term: Terminal, outbox: Outbox) -> None:
    action_id = term.seed("issue_refund", {"order_id": "4821", "amount_usd": 20})
    assert term.status(action_id) == "executed"

    code, out = term.run("actions", "revert", action_id, "--by", "alice")
    assert code == 2 and "Missing option '--reason'" in out
    code, out = term.run("actions", "revert", action_id, "--by", "support-bot", "--reason", "x")
    assert code == 1 and "support-bot may not revert issue_refund actions" in out
    code, out = term.run("actions", "revert", "act_nope", "--by", "alice", "--reason", "x")
    assert code == 1 and "no action 'act_nope'" in out
    assert outbox.calls == [] and term.status(action_id) == "executed"

    code, out = term.run("actions", "revert", action_id, "--by", "alice", "--reason", "duplicate")
    assert code == 0, out
    assert f"reverted {action_id} (issue_refund)" in out
    assert outbox.calls == [("/refunds/cancel", f"{action_id}:revert")]
    assert term.status(action_id) == "reverted"
    [record] = term.audit(action_id)
    assert (record["reason"], record["details"]["by"]) == ("duplicate", "alice")


def test_breakers_from_the_terminal(term: Terminal) -> None:
    code, out = term.run("breakers", "list", "--format", "json")
    assert code == 0, out
    states = {s["tool"]: s for s in json.loads(out)}
    assert states["issue_refund"]["configured"] == {"max_executed": 20, "window": "10m"}
    assert states["send_email"]["configured"] is None
    assert not any(s["tripped"] for s in states.values())

    refused = [
        (("trip", "issue_refund", "--by", "ravi", "--reason", "x"), "ravi is not an admin"),
        (("trip", "wire_money", "--by", "alice", "--reason", "x"), "no tool_policy governs"),
        (("trip", "issue_refund", "--by", "alice", "--reason", "  "), "needs a reason"),
        (("reset", "issue_refund", "--by", "nobody", "--reason", "x"), "nobody is not an admin"),
    ]
    for args, says in refused:
        code, out = term.run("breakers", *args)
        assert (code, says in out) == (1, True), out
    assert term.audit(None, at_least=0) == []  # refused commands change nothing, record nothing

    code, out = term.run(
        "breakers", "trip", "issue_refund", "--by", "alice", "--reason", "fraud ring"
    )
    assert code == 0 and "every issue_refund call is denied until it is reset" in out
    code, out = term.run("breakers", "list")
    assert code == 0 and "1 of 2 tools paused" in out and "TRIPPED" in out
    decision, reasons = term.decide("issue_refund", {"order_id": "4821", "amount_usd": 5})
    assert decision == "deny" and "tripped by alice" in reasons[0] and "fraud ring" in reasons[0]

    code, out = term.run("breakers", "reset", "issue_refund", "--by", "alice", "--reason", "ok")
    assert code == 0 and "it runs again" in out
    assert term.decide("issue_refund", {"order_id": "4821", "amount_usd": 5})[0] == "allow"
    records = term.audit(None, at_least=2)
    assert [(r["details"]["event"], r["reason"]) for r in records] == [
        ("breaker_tripped", "fraud ring"),
        ("breaker_reset", "ok"),
    ]


def test_bad_options_are_usage_errors(term: Terminal) -> None:
    code, out = term.run("actions", "list", "--status", "done")
    assert code == 2 and "'done' is not one of" in out
    code, out = term.run("actions", "list", "--limit", "0")
    assert code == 2 and "0 is not in the range" in out
    code, out = term.run("breakers", "trip", "issue_refund", "--reason", "x")
    assert code == 2 and "Missing option '--by'" in out
