"""The issue's "done when", through ActionService on both store backends: small refunds pass,
large ones wait for a person, caps count executed refunds only, bad input changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from charter.approvals import ActionService, Authorization
from charter.errors import ConfigurationError, Conflict, InvalidRequest, NotFound, PermissionDenied
from charter.policy.verdict import Action
from charter.storage import Store

from .conftest import ORDERS, at, example_charter, make_service, refund_charter

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def go() -> T:
        return await awaitable

    return asyncio.run(go())


async def refund(
    service: ActionService,
    amount: float,
    *,
    order: str = "4821",
    subject: str = "cust-1",
    seconds: float = 0,
    principal: str = "support-bot",
    orders: dict[str, Any] | None = None,
) -> Authorization:
    return await service.authorize(
        principal,
        "issue_refund",
        {"order_id": order, "amount_usd": amount, "reason": "damaged"},
        subject=subject,
        conversation_id="conv-1",
        history=("lookup_order",),
        attributes=ORDERS if orders is None else orders,
        excerpt="customer: my boots arrived torn, please refund",
        now=at(seconds),
    )


def test_a_30_dollar_refund_passes_and_executes(service: ActionService) -> None:
    async def go() -> None:
        auth = await refund(service, 30)
        assert auth.decision == "allow" and auth.verdict is Action.ALLOW
        assert auth.id is not None and auth.id.startswith("act_") and auth.approval_id is None
        assert auth.hold_until == at(900)  # the policy's default hold, 15m
        assert auth.verdicts[0].control_id == "refund-policy"
        row = await service.executed(auth.id, outcome={"refund": "re_123"}, now=at(5))
        assert row.status == "executed" and row.executed_at == at(5)
        assert json.loads(row.outcome_json or "") == {"refund": "re_123"}
        with pytest.raises(Conflict, match="already executed"):
            await service.executed(auth.id, now=at(6))

    run(go())


def test_a_60_dollar_refund_goes_to_review_and_executes_only_after_approval(
    service: ActionService, store: Store
) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert auth.decision == "review" and auth.verdict is Action.ESCALATE
        assert auth.approval_id is not None and auth.approval_id.startswith("apr_")
        assert auth.deadline == at(4 * 3600)
        assert "over the cap of 40 [rule caps[0]]" in auth.reasons[0]
        assert auth.id is not None
        with pytest.raises(Conflict, match="waiting for approval"):
            await service.executed(auth.id, now=at(10))
        pending = await service.list_pending(now=at(10))
        assert [p.approval_id for p in pending] == [auth.approval_id]
        shown = pending[0]
        assert (shown.status, shown.tool, shown.subject) == ("pending", "issue_refund", "cust-1")
        assert (shown.control_id, shown.approval_control_id) == ("refund-policy", "refund-approval")
        assert json.loads(shown.decision_ids_json) == ["refund-limits", "own-orders-only"]
        assert json.loads(shown.reviewer_roles_json) == ["reviewer"]
        assert shown.excerpt.startswith("customer: my boots")
        approved = await service.approve(auth.approval_id, "ravi", "invoice checked", now=at(60))
        assert (approved.status, approved.reviewer, approved.review_reason) == (
            "approved",
            "ravi",
            "invoice checked",
        )
        assert approved.hold_until == at(60 + 900)
        done = await service.executed(auth.id, now=at(120))
        assert done.status == "executed"
        assert await service.list_pending(now=at(130)) == []

    run(go())


def test_a_fourth_refund_for_the_same_customer_in_a_day_is_denied(
    service: ActionService,
) -> None:
    async def go() -> None:
        for i in range(3):
            auth = await refund(service, 10, seconds=i)
            assert auth.id is not None
            await service.executed(auth.id, now=at(i + 0.5))
        fourth = await refund(service, 10, seconds=3600)
        assert fourth.decision == "deny" and fourth.id is None
        assert fourth.reasons == (
            "issue_refund: at most 3 calls per 1d for subject cust-1: 3 already counted "
            "[rule rates[0]]",
        )
        assert fourth.verdicts[-1].evidence["rules"][0]["rule"] == "rates[0]"
        other = await refund(service, 10, subject="cust-2", seconds=3600)
        assert other.decision == "allow"
        next_day = await refund(service, 10, seconds=86400 + 1)
        assert next_day.decision == "allow"

    run(go())


def test_a_refund_on_another_customers_order_is_denied_and_stores_nothing(
    service: ActionService, store: Store
) -> None:
    async def go() -> None:
        auth = await refund(service, 10, order="9999")
        assert auth.decision == "deny" and auth.id is None
        assert "order_id 9999 is not among the customer_orders" in auth.reasons[0]
        assert store.list_actions() == []

    run(go())


def test_sum_caps_count_amounts_per_week(service: ActionService) -> None:
    async def go() -> None:
        for day, amounts in enumerate([(40, 40, 40), (40, 40)]):
            for n, amount in enumerate(amounts):
                auth = await refund(service, amount, seconds=day * 86400 + n)
                assert auth.id is not None
                await service.executed(auth.id, now=at(day * 86400 + n + 0.5))
        over = await refund(service, 1, seconds=86400 + 10)
        assert over.decision == "deny"
        assert "200 of 200 already counted and this call adds 1 [rule rates[1]]" in over.reasons[0]

    run(go())


def test_caps_count_only_executed_refunds(service: ActionService, store: Store) -> None:
    async def go() -> None:
        held = [await refund(service, 10, seconds=i) for i in range(3)]
        assert [a.decision for a in held] == ["allow"] * 3
        assert (await refund(service, 10, seconds=5)).decision == "deny"  # 3 holds are in use
        moved = await service.expire_due(at(900 + 2))  # the first 3 holds lapse by now
        assert sorted(r.status for r in moved) == ["abandoned"] * 3
        assert all(r.settled_at is not None for r in store.list_actions())
        assert held[0].id is not None
        with pytest.raises(Conflict, match="lapsed"):
            await service.executed(held[0].id, now=at(903))
        again = await refund(service, 10, seconds=904)
        assert again.decision == "allow"

    run(go())


def test_a_rejected_refund_gives_its_cap_back(service: ActionService) -> None:
    async def go() -> None:
        review = await refund(service, 60)
        for i in range(2):
            assert (await refund(service, 10, seconds=i + 1)).decision == "allow"
        assert (await refund(service, 10, seconds=5)).decision == "deny"
        assert review.approval_id is not None
        rejected = await service.reject(review.approval_id, "ravi", "no invoice", now=at(6))
        assert (rejected.status, rejected.reviewer) == ("rejected", "ravi")
        assert rejected.settled_at == at(6)
        assert (await refund(service, 10, seconds=7)).decision == "allow"

    run(go())


# -- reviewers ------------------------------------------------------------------------------------


def test_approving_twice_is_a_conflict_that_changes_nothing(service: ActionService) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert auth.approval_id is not None
        await service.approve(auth.approval_id, "ravi", "fine", now=at(10))
        with pytest.raises(Conflict, match="already approved by ravi"):
            await service.approve(auth.approval_id, "ravi", "again", now=at(11))
        with pytest.raises(Conflict, match="already approved"):
            await service.reject(auth.approval_id, "ravi", "changed my mind", now=at(12))
        row = await service.get_approval(auth.approval_id)
        assert (row.status, row.review_reason, row.reviewed_at) == ("approved", "fine", at(10))

    run(go())


def test_approving_after_the_deadline_expires_it_default_deny(
    service: ActionService, store: Store
) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert auth.approval_id is not None and auth.id is not None
        with pytest.raises(Conflict, match=r"expired .* without a decision"):
            await service.approve(auth.approval_id, "ravi", "late", now=at(4 * 3600))
        row = await service.get(auth.id)
        assert row.status == "expired" and row.reviewer is None and row.settled_at is not None
        with pytest.raises(Conflict, match="expired"):
            await service.executed(auth.id, now=at(4 * 3600 + 1))

    run(go())


def test_the_sweeper_expires_overdue_approvals(service: ActionService) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert await service.expire_due(at(3600)) == []
        moved = await service.expire_due(at(4 * 3600 + 1))
        assert [(r.approval_id, r.status) for r in moved] == [(auth.approval_id, "expired")]
        assert await service.expire_due(at(4 * 3600 + 2)) == []

    run(go())


@pytest.mark.parametrize(
    ("reviewer", "words"),
    [
        ("alice", r"alice holds roles \['admin'\]; approval .* needs one of \['reviewer'\]"),
        ("audrey", r"holds roles \['auditor'\]"),
        ("support-bot", "holds roles none"),
        ("mallory", "not a principal of the charter"),
    ],
)
def test_only_a_listed_role_may_review(service: ActionService, reviewer: str, words: str) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert auth.approval_id is not None
        with pytest.raises(PermissionDenied, match=words):
            await service.approve(auth.approval_id, reviewer, "ok", now=at(1))
        with pytest.raises(PermissionDenied):
            await service.reject(auth.approval_id, reviewer, "no", now=at(1))
        assert (await service.get_approval(auth.approval_id)).status == "pending"

    run(go())


def test_a_reviewer_cannot_approve_their_own_request(service: ActionService) -> None:
    async def go() -> None:
        auth = await refund(service, 60, principal="ravi")
        assert auth.approval_id is not None
        with pytest.raises(PermissionDenied, match="cannot approve it themselves"):
            await service.approve(auth.approval_id, "ravi", "mine", now=at(1))
        assert (await service.get_approval(auth.approval_id)).status == "pending"

    run(go())


def test_forged_and_malformed_ids_are_refused(service: ActionService, store: Store) -> None:
    async def go() -> None:
        auth = await refund(service, 60)
        assert auth.id is not None
        with pytest.raises(NotFound, match="no approval 'apr_forged'"):
            await service.approve("apr_forged", "ravi", "ok", now=at(1))
        with pytest.raises(NotFound, match="no approval"):
            await service.approve(auth.id, "ravi", "ok", now=at(1))  # an action id is not one
        with pytest.raises(NotFound, match="no action"):
            await service.executed("act_forged", now=at(1))
        with pytest.raises(InvalidRequest, match="needs a reason"):
            await service.approve(auth.approval_id or "", "ravi", "  ", now=at(1))
        with pytest.raises(InvalidRequest):
            await service.approve("", "ravi", "ok", now=at(1))
        assert [r.status for r in store.list_actions()] == ["pending"]

    run(go())


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "tool", "arguments", "words"),
    [
        ("support-bot", "", {}, "tool must be a non-empty string"),
        ("support-bot", "x" * 300, {}, "at most 200 printable characters"),
        ("support-bot", "issue_refund", "{not json", "not valid JSON"),
        ("support-bot", "issue_refund", "[1, 2]", "must be a JSON object, got list"),
        ("support-bot", "issue_refund", {"amount_usd": float("inf")}, "not JSON data"),
        ("nobody", "issue_refund", {}, "unknown principal 'nobody'"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    service: ActionService, store: Store, principal: str, tool: str, arguments: Any, words: str
) -> None:
    async def go() -> None:
        with pytest.raises(InvalidRequest, match=words):
            await service.authorize(principal, tool, arguments, subject="cust-1", now=at(0))
        assert store.list_actions() == []
        assert (await refund(service, 10)).decision == "allow"  # no cap was touched

    run(go())


def test_history_and_attributes_must_have_the_right_shape(service: ActionService) -> None:
    async def go() -> None:
        with pytest.raises(InvalidRequest, match="history"):
            await service.authorize("support-bot", "t", {}, history="read_inbox")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="attributes"):
            await service.authorize("support-bot", "t", {}, attributes=["x"])  # type: ignore[arg-type]

    run(go())


def test_arguments_as_openai_json_text_are_accepted(service: ActionService) -> None:
    async def go() -> None:
        auth = await service.authorize(
            "support-bot",
            "issue_refund",
            '{"order_id": "4821", "amount_usd": 30}',
            subject="cust-1",
            attributes=ORDERS,
            now=at(0),
        )
        assert auth.decision == "allow"

    run(go())


def test_a_tool_without_a_policy_passes_through_and_says_so(
    service: ActionService, store: Store
) -> None:
    async def go() -> None:
        auth = await service.authorize("support-bot", "lookup_order", {"q": "4821"}, now=at(0))
        assert auth.decision == "allow" and auth.verdicts == ()
        assert auth.reasons == (
            "no tool_policy governs `lookup_order`; tools without a policy pass through",
        )
        assert auth.id is not None
        assert (await service.executed(auth.id, now=at(1))).status == "executed"

    run(go())


# -- set-up --------------------------------------------------------------------------------------


def test_a_policy_that_reviews_needs_an_approval_control(store: Store) -> None:
    charter = example_charter()
    without = charter.model_copy(
        update={"controls": [c for c in charter.controls if c.id != "refund-approval"]}
    )
    with pytest.raises(ConfigurationError, match="no approval control serves"):
        make_service(without, store)


def test_a_webhook_secret_must_be_set(store: Store) -> None:
    charter = refund_charter(
        approval_extra="      notify_webhook: http://127.0.0.1:9/x\n"
        "      webhook_secret_env: HOOK_SECRET\n"
    )
    with pytest.raises(ConfigurationError, match=r"\$HOOK_SECRET, which is not set"):
        make_service(charter, store, env={})
    make_service(charter, store)  # with the variable set it starts
