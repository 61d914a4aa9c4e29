"""`charter approvals list/show/approve/reject` against a SQLite database the gateway shares."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from charter.audit.log import stored_leaf_bytes
from charter.cli import main
from charter.storage import open_store

from .conftest import EXAMPLE, ORDERS, example_charter, make_service


def pending_refund(db: str, amount: float = 60) -> tuple[str, str]:
    """A refund waiting for approval, as the gateway would have queued it."""
    with open_store(db) as store:
        store.migrate()
        service = make_service(example_charter(), store)

        async def go() -> tuple[str, str]:
            auth = await service.authorize(
                "support-bot",
                "issue_refund",
                {"order_id": "4821", "amount_usd": amount},
                subject="cust-1",
                attributes=ORDERS,
            )
            assert auth.approval_id is not None and auth.id is not None
            return auth.approval_id, auth.id

        return asyncio.run(go())


def cli(db: str, *args: str) -> tuple[int, str]:
    state = Path(db.removeprefix("sqlite:///")).parent / "state"  # the gateway's audit keys
    result = CliRunner().invoke(
        main,
        ["approvals", *args, "--charter", str(EXAMPLE), "--database", db, "--data-dir", str(state)],
    )
    return result.exit_code, " ".join(result.output.split())  # rich wraps at 80 columns


def test_list_show_approve(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/charter.db"
    approval_id, action_id = pending_refund(db)
    code, out = cli(db, "list", "--format", "json")
    assert code == 0, out
    [listed] = json.loads(out)
    assert listed["approval_id"] == approval_id and listed["arguments"]["amount_usd"] == 60
    code, out = cli(db, "list")
    assert code == 0 and "1 pending approvals" in out
    code, out = cli(db, "show", approval_id)
    assert code == 0 and json.loads(out)["control"] == "refund-policy"
    code, out = cli(db, "approve", approval_id, "--as", "ravi", "--reason", "invoice ok")
    assert code == 0, out
    assert f"approved {approval_id}" in out
    with open_store(db) as store:
        row = store.get_action(action_id)
        assert row is not None and (row.status, row.reviewer) == ("approved", "ravi")


def test_errors_are_one_line_with_a_hint_and_change_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/charter.db"
    approval_id, action_id = pending_refund(db)
    code, out = cli(db, "approve", "apr_forged", "--as", "ravi", "--reason", "x")
    assert code == 1 and "no approval 'apr_forged'" in out and "Traceback" not in out
    code, out = cli(db, "approve", approval_id, "--as", "alice", "--reason", "x")
    assert code == 1 and "needs one of ['reviewer']" in out
    code, out = cli(db, "reject", approval_id, "--as", "ravi", "--reason", "no invoice")
    assert code == 0 and f"rejected {approval_id}" in out
    code, out = cli(db, "approve", approval_id, "--as", "ravi", "--reason", "x")
    assert code == 1 and "was rejected by ravi" in out
    with open_store(db) as store:
        row = store.get_action(action_id)
        assert row is not None and row.status == "rejected"
        assert row.settled_at is None  # no live counters here: the gateway's sweeper gives it back


def test_every_decision_from_the_cli_is_an_audit_record(tmp_path: Path) -> None:
    """Pins: `charter approvals approve/reject` changed the queue but wrote no audit record."""
    db = f"sqlite:///{tmp_path}/charter.db"
    approved_id, approved_action = pending_refund(db)
    rejected_id, rejected_action = pending_refund(db, amount=70)
    assert cli(db, "approve", approved_id, "--as", "ravi", "--reason", "invoice ok")[0] == 0
    assert cli(db, "reject", rejected_id, "--as", "ravi", "--reason", "no invoice")[0] == 0
    with open_store(db) as store:
        records = [json.loads(leaf) for leaf in stored_leaf_bytes(store)]
    steps = {(r["request_id"], r["details"]["event"]): r for r in records}
    approved = steps[(approved_action, "approved")]
    assert approved["kind"] == "approval" and approved["details"]["reviewer"] == "ravi"
    assert approved["reason"] == "invoice ok"
    assert steps[(rejected_action, "rejected")]["reason"] == "no invoice"
    code, out = cli(db, "list", "--format", "json")
    assert code == 0 and json.loads(out) == []
