"""Signed notifications, staged execution, reverts and circuit breakers, against a real HTTP
receiver on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from charter.approvals import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ActionService,
    Authorization,
    WebhookSender,
    sign,
    verify,
)
from charter.counters import MemoryCounters
from charter.errors import InvalidRequest, PermissionDenied, UpstreamError
from charter.storage import Store

from .conftest import ORDERS, SECRET, Receiver, at, example_charter, make_service, refund_charter


async def refund(
    service: ActionService, amount: float, seconds: float = 0, subject: str = "cust-1"
) -> Authorization:
    return await service.authorize(
        "support-bot",
        "issue_refund",
        {"order_id": "4821", "amount_usd": amount},
        subject=subject,
        attributes=ORDERS,
        now=at(seconds),
    )


def hook(receiver: Receiver, path: str) -> str:
    return f"{{url: '{receiver.url}{path}', secret_env: HOOK_SECRET, timeout_s: 5}}"


def test_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"a":1}'
    signature = sign(b"k", "1000.000", body)
    assert verify(b"k", "1000.000", body, signature, now=1010)
    assert not verify(b"k", "1000.000", b'{"a":2}', signature, now=1010)
    assert not verify(b"other", "1000.000", body, signature, now=1010)
    assert not verify(b"k", "1000.000", body, signature, now=5000)  # too old: a replay
    assert not verify(b"k", "not-a-time", body, signature, now=1010)


def test_a_pending_approval_notifies_the_webhook_signed(store: Store, receiver: Receiver) -> None:
    charter = refund_charter(
        approval_extra=f"      notify_webhook: {receiver.url}/approvals\n"
        "      webhook_secret_env: HOOK_SECRET\n"
    )
    receiver.statuses = [503, 500]  # two failures, then delivered

    async def go() -> Authorization:
        service = make_service(charter, store)
        auth = await refund(service, 60)
        assert auth.decision == "review"
        await service.aclose()  # waits for the notification in flight
        assert service.notifier.delivered[-1].attempts == 3
        assert service.notifier.delivered[-1].ok
        return auth

    auth = asyncio.run(go())
    assert len(receiver.calls) == 3
    call = receiver.calls[-1]
    assert call.path == "/approvals"
    assert verify(
        SECRET.encode(), call.headers[TIMESTAMP_HEADER], call.body, call.headers[SIGNATURE_HEADER]
    )
    payload = json.loads(call.body)
    assert payload["type"] == "approval.pending"
    assert payload["approval_id"] == auth.approval_id and payload["reviewer_roles"] == ["reviewer"]
    assert payload["arguments"] == {"amount_usd": 60, "order_id": "4821"}


def test_a_refused_notification_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]

    async def go() -> None:
        sender = WebhookSender(backoff_s=0.01)
        delivery = await sender.post(receiver.url, {"x": 1}, b"k", attempts=3)
        await sender.aclose()
        assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, 400)

    asyncio.run(go())
    assert len(receiver.calls) == 1


def test_an_unreachable_webhook_fails_after_bounded_attempts() -> None:
    async def go() -> None:
        sender = WebhookSender(backoff_s=0.01)
        delivery = await sender.post("http://127.0.0.1:1/x", {}, b"k", attempts=2, timeout_s=1)
        await sender.aclose()
        assert (delivery.ok, delivery.attempts, delivery.status) == (False, 2, None)
        assert "ConnectError" in delivery.detail

    asyncio.run(go())


def test_charter_executes_an_approved_action_with_an_idempotency_key(
    store: Store, receiver: Receiver
) -> None:
    charter = refund_charter(policy_extra=f"      execute: {hook(receiver, '/refunds')}\n")
    receiver.statuses = [400]  # the first execution is refused, the retry goes through

    async def go() -> None:
        service = make_service(charter, store)
        auth = await refund(service, 60)
        assert auth.approval_id is not None and auth.id is not None
        first = await service.approve(auth.approval_id, "ravi", "ok", now=at(10))
        assert first.status == "approved"
        assert json.loads(first.outcome_json or "")["execute"]["status"] == 400
        second = await service.execute(auth.id, now=at(20))
        assert second.status == "executed" and second.executed_at == at(20)
        assert json.loads(second.outcome_json or "")["execute"]["ok"] is True
        await service.aclose()

    asyncio.run(go())
    keys = {c.headers[IDEMPOTENCY_HEADER] for c in receiver.calls}
    assert len(receiver.calls) == 2 and len(keys) == 1 and keys.pop().startswith("act_")
    assert json.loads(receiver.calls[0].body)["type"] == "action.execute"


def test_a_reversible_action_is_reverted_through_its_compensating_call(
    store: Store, receiver: Receiver
) -> None:
    charter = refund_charter(
        policy_extra=f"      reversible: true\n      compensate: {hook(receiver, '/undo')}\n"
    )

    async def go() -> None:
        service = make_service(charter, store)
        auth = await refund(service, 30)
        assert auth.id is not None
        await service.executed(auth.id, now=at(1))
        with pytest.raises(PermissionDenied, match="may not revert"):
            await service.revert(auth.id, "support-bot", "oops", now=at(2))
        reverted = await service.revert(auth.id, "alice", "refunded twice by mistake", now=at(3))
        assert reverted.status == "reverted"
        assert json.loads(reverted.outcome_json or "")["revert"]["by"] == "alice"
        await service.aclose()

    asyncio.run(go())
    assert [c.path for c in receiver.calls] == ["/undo"]
    assert receiver.calls[0].headers[IDEMPOTENCY_HEADER].endswith(":revert")


def test_a_failed_compensating_call_leaves_the_action_executed(
    store: Store, receiver: Receiver
) -> None:
    charter = refund_charter(
        policy_extra=f"      reversible: true\n      compensate: {hook(receiver, '/undo')}\n"
    )
    receiver.statuses = [422]

    async def go() -> None:
        service = make_service(charter, store)
        auth = await refund(service, 30)
        assert auth.id is not None
        await service.executed(auth.id, now=at(1))
        with pytest.raises(UpstreamError, match=r"compensating call .* failed"):
            await service.revert(auth.id, "alice", "undo", now=at(2))
        assert (await service.get(auth.id)).status == "executed"
        await service.aclose()

    asyncio.run(go())


def test_an_irreversible_tool_cannot_be_reverted(store: Store) -> None:
    async def go() -> None:
        service = make_service(refund_charter(), store)  # the example's refunds are reversible
        auth = await refund(service, 30)
        assert auth.id is not None
        await service.executed(auth.id, now=at(1))
        with pytest.raises(InvalidRequest, match="not reversible"):
            await service.revert(auth.id, "alice", "undo", now=at(2))

    asyncio.run(go())


def test_the_circuit_breaker_trips_on_a_spike_and_an_admin_resets_it(store: Store) -> None:
    charter = refund_charter(policy_extra="      breaker: {max_executed: 2, window: 10m}\n")

    async def go() -> None:
        service = make_service(charter, store)
        for n in range(3):
            auth = await refund(service, 10, seconds=n, subject=f"cust-{n}")
            assert auth.id is not None
            await service.executed(auth.id, now=at(n + 0.5))
        [state] = await service.breakers()
        assert state.tripped and state.by == "charter"
        assert state.reason == "3 issue_refund calls executed in the last 10m, more than 2"
        paused = await refund(service, 10, seconds=10, subject="cust-9")
        assert paused.decision == "deny" and "paused for everyone" in paused.reasons[0]
        with pytest.raises(PermissionDenied, match="not an admin"):
            await service.reset("issue_refund", "ravi", "looks fine", now=at(11))
        with pytest.raises(InvalidRequest, match="needs a reason"):
            await service.reset("issue_refund", "alice", " ", now=at(11))
        await service.reset("issue_refund", "alice", "spike was a promotion", now=at(12))
        assert (await refund(service, 10, seconds=13, subject="cust-9")).decision == "allow"
        await service.trip("issue_refund", "alice", "fraud wave", now=at(14))
        assert (await refund(service, 10, seconds=15, subject="cust-8")).decision == "deny"

    asyncio.run(go())


def test_a_process_without_the_live_counters_leaves_release_to_the_gateway(
    store: Store,
) -> None:
    """The CLI next to an embedded gateway rejects; the gateway's sweeper gives the hold back."""
    counters = MemoryCounters()

    async def go() -> None:
        gateway = make_service(example_charter(), store, counters=counters)
        review = await refund(gateway, 60)
        for n in range(2):
            assert (await refund(gateway, 10, seconds=n + 1)).decision == "allow"
        cli = make_service(example_charter(), store)
        cli.counters = None
        assert review.approval_id is not None
        rejected = await cli.reject(review.approval_id, "ravi", "no", now=at(5))
        assert rejected.status == "rejected" and rejected.settled_at is None
        assert (await refund(gateway, 10, seconds=6)).decision == "deny"  # not given back yet
        assert await gateway.expire_due(at(7)) == []
        assert (await refund(gateway, 10, seconds=8)).decision == "allow"

    asyncio.run(go())
