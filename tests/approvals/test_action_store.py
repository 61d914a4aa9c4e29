"""The Store's action and breaker methods, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from charter.errors import Conflict, InvalidRequest
from charter.storage import ActionChange, ActionRow, BreakerRow, Store, open_store

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def action(action_id: str, status: str = "authorized", *, hold: float = 900, **fields: object):
    row = ActionRow(
        id=action_id,
        tool="issue_refund",
        arguments_json='{"amount_usd":30,"order_id":"4821"}',
        principal_id="support-bot",
        status=status,
        created_at=at(0),
        hold_until=at(hold),
        updated_at=at(0),
        subject="cust-1",
        conversation_id="conv-1",
        excerpt="user: refund order 4821 please",
        claims_json='[{"key":"k","amount":1,"limit":3,"kind":"sliding","window_s":86400}]',
    )
    return replace(row, **fields)  # type: ignore[arg-type]


def test_create_get_find_list_round_trip(store: Store) -> None:
    pending = action(
        "act_b",
        "pending",
        approval_id="apr_b",
        control_id="refund-policy",
        decision_ids_json='["refund-limits"]',
        reason="amount over the cap",
        approval_control_id="refund-approval",
        reviewer_roles_json='["reviewer"]',
        deadline=at(3600),
    )
    store.create_action(action("act_a"))
    store.create_action(replace(pending, created_at=at(1)))
    assert store.get_action("act_a") == action("act_a")
    assert store.find_approval("apr_b") == replace(pending, created_at=at(1))
    assert store.get_action("nope") is None and store.find_approval("nope") is None
    assert [r.id for r in store.list_actions()] == ["act_b", "act_a"]
    assert [r.id for r in store.list_actions(["pending"])] == ["act_b"]
    assert store.list_actions(["rejected", "expired"]) == []


def test_duplicate_ids_conflict(store: Store) -> None:
    store.create_action(action("act_a", "pending", approval_id="apr_1", deadline=at(9)))
    with pytest.raises(Conflict):
        store.create_action(action("act_a"))
    with pytest.raises(Conflict):
        store.create_action(action("act_b", "pending", approval_id="apr_1", deadline=at(9)))


def test_bad_rows_are_refused_before_writing(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="status"):
        store.create_action(action("act_a", "done"))
    with pytest.raises(InvalidRequest, match="naive"):
        store.create_action(replace(action("act_a"), hold_until=datetime(2025, 1, 1)))
    with pytest.raises(InvalidRequest, match="list of statuses"):
        store.list_actions("pending")
    assert store.list_actions() == []


def test_update_is_compare_and_set(store: Store) -> None:
    store.create_action(action("act_a", "pending", approval_id="apr_a", deadline=at(60)))
    change = ActionChange(
        "approved", at(10), hold_until=at(910), reviewer="ravi", review_reason="ok"
    )
    updated = store.update_action("act_a", ["pending"], change)
    assert updated is not None
    assert (updated.status, updated.reviewer, updated.review_reason) == ("approved", "ravi", "ok")
    assert updated.reviewed_at == at(10) and updated.hold_until == at(910)
    assert updated.updated_at == at(10) and updated.executed_at is None
    assert store.update_action("act_a", ["pending"], change) is None  # approving twice
    done = store.update_action(
        "act_a", ["approved"], ActionChange("executed", at(20), outcome_json="{}", settled=True)
    )
    assert done is not None and done.executed_at == at(20) and done.settled_at == at(20)
    assert done.reviewer == "ravi"  # fields the change leaves None keep their value
    assert store.update_action("missing", ["pending"], change) is None


def test_concurrent_transitions_let_exactly_one_win(store_url: str) -> None:
    with open_store(store_url) as setup:
        setup.migrate()
        setup.create_action(action("act_a", "pending", approval_id="apr_a", deadline=at(60)))
    stores = [open_store(store_url) for _ in range(4)]
    try:

        def approve(i: int) -> bool:
            change = ActionChange("approved", at(1), reviewer=f"r{i}", review_reason="x")
            return stores[i % 4].update_action("act_a", ["pending"], change) is not None

        with ThreadPoolExecutor(8) as pool:
            wins = list(pool.map(approve, range(16)))
        assert wins.count(True) == 1
    finally:
        for s in stores:
            s.close()


def test_due_actions_and_settling(store: Store) -> None:
    store.create_action(action("act_live", hold=100))
    store.create_action(action("act_later", hold=1000))
    store.create_action(action("act_pending", "pending", hold=50, approval_id="a", deadline=at(50)))
    store.create_action(action("act_rejected", "rejected", hold=5000))
    store.create_action(action("act_done", "executed", hold=10, settled_at=at(5)))
    assert [r.id for r in store.due_actions(at(200))] == [
        "act_pending",
        "act_live",
        "act_rejected",
    ]
    assert store.mark_settled("act_rejected", at(201)) is True
    assert store.mark_settled("act_rejected", at(202)) is False
    assert [r.id for r in store.due_actions(at(200))] == ["act_pending", "act_live"]
    assert [r.id for r in store.due_actions(at(2000), limit=1)] == ["act_pending"]


def test_count_executed_for_breakers(store: Store) -> None:
    for i in range(3):
        store.create_action(action(f"act_{i}"))
        store.update_action(f"act_{i}", ["authorized"], ActionChange("executed", at(i * 60)))
    store.create_action(action("act_other"))
    assert store.count_executed("issue_refund", at(0)) == 3
    assert store.count_executed("issue_refund", at(61)) == 1
    assert store.count_executed("send_email", at(0)) == 0


def test_breakers_are_set_and_replaced(store: Store) -> None:
    assert store.breakers() == []
    store.save_breaker(BreakerRow("issue_refund", True, "spike", "alice", at(1)))
    store.save_breaker(BreakerRow("a_tool", True, "test", "alice", at(2)))
    store.save_breaker(BreakerRow("issue_refund", False, "checked", "alice", at(3)))
    assert store.breakers() == [
        BreakerRow("a_tool", True, "test", "alice", at(2)),
        BreakerRow("issue_refund", False, "checked", "alice", at(3)),
    ]
    with pytest.raises(InvalidRequest):
        store.save_breaker(BreakerRow("x", True, "", "alice", at(4)))
