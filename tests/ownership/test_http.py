"""HTTP ownership lookups against a real service on loopback, through the resolver and the
action service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType

import pytest

from charter.errors import ConfigurationError
from charter.ownership import OwnershipResolver
from charter.policy.context import RequestContext, ToolCall
from charter.policy.verdict import Stage
from tests.ownership.conftest import OwnershipService, charter_with, make_service

pytestmark = pytest.mark.anyio


def http(service: OwnershipService, extra: str = "", path: str = "owners") -> str:
    url = f"{service.base}/{path}/{{subject}}/orders/{{resource}}"
    return f"{{argument: order_id, http: {{url: '{url}'{extra}}}}}"


def call(order: object, subject: str | None = "cust-1") -> RequestContext:
    args = MappingProxyType({"order_id": order, "amount_usd": 5})
    return RequestContext(
        Stage.TOOL_CALL, tool_call=ToolCall("issue_refund", args), subject=subject
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_owned_and_not_owned_through_authorize(
    ownership_service: OwnershipService, tmp_path: Path
) -> None:
    service = make_service(charter_with(http(ownership_service)), tmp_path, {})
    try:
        mine = await service.authorize(
            "support-bot", "issue_refund", {"order_id": "4821", "amount_usd": 5}, subject="cust-1"
        )
        theirs = await service.authorize(
            "support-bot", "issue_refund", {"order_id": "5001", "amount_usd": 5}, subject="cust-1"
        )
        # What the caller claims it owns is not asked and cannot help.
        lying = await service.authorize(
            "support-bot",
            "issue_refund",
            {"order_id": "5001", "amount_usd": 5},
            subject="cust-1",
            attributes={"customer_orders": ["5001"]},
        )
    finally:
        await service.aclose()
    assert mine.decision == "allow"
    assert theirs.decision == "deny" and lying.decision == "deny"
    assert "order_id 5001 is not owned by subject cust-1" in theirs.reasons[0]
    assert "owned: false" in theirs.reasons[0]
    assert ownership_service.asked() == [("cust-1", "4821"), ("cust-1", "5001")]  # 3rd cached


async def test_not_owned_status(ownership_service: OwnershipService) -> None:
    charter = charter_with(http(ownership_service, ", not_owned_status: [404, 403]", "by-status"))
    resolver = OwnershipResolver(charter, env={})
    try:
        yes = (await resolver.resolve(call("4821")))["refund-policy"]
        no = (await resolver.resolve(call("9999")))["refund-policy"]
        ownership_service.status = 403
        forbidden = (await resolver.resolve(call("7777")))["refund-policy"]
    finally:
        await resolver.aclose()
    assert (yes.owned, no.owned, no.detail) == (True, False, "answered 404")
    assert (forbidden.owned, forbidden.detail) == (False, "answered 403")


@pytest.mark.parametrize(
    "on_error, decision", [("deny", "deny"), ("review", "review"), ("allow", "allow")]
)
@pytest.mark.parametrize("fault", ["5xx", "timeout", "down", "bad answer"])
async def test_failed_lookups_follow_on_error(
    ownership_service: OwnershipService, tmp_path: Path, on_error: str, decision: str, fault: str
) -> None:
    setting = http(ownership_service, ", timeout_s: 0.3")[:-1] + f", on_error: {on_error}}}"
    if fault == "5xx":
        ownership_service.status = 503
    elif fault == "timeout":
        ownership_service.delay_s = 1.0
    elif fault == "down":
        setting = setting.replace(str(ownership_service.port), "9")  # discard port: refused
    else:
        ownership_service.answer = {"owned": "yes"}
    service = make_service(charter_with(setting), tmp_path, {})
    try:
        auth = await service.authorize(
            "support-bot", "issue_refund", {"order_id": "4821", "amount_usd": 5}, subject="cust-1"
        )
    finally:
        await service.aclose()
    assert auth.decision == decision
    said = {
        "5xx": "answered 503",
        "timeout": "no answer within 0.3s",
        "down": "could not be reached",
        "bad answer": "no JSON boolean `owned`",
    }[fault]
    assert said in " ".join(auth.reasons + tuple(v.reason for v in auth.verdicts))
    evidence = auth.verdicts[0].evidence["ownership"]
    assert evidence["owned"] is None and said in evidence["detail"]


async def test_cache_hit_and_expiry(ownership_service: OwnershipService) -> None:
    clock = Clock()
    charter = charter_with(http(ownership_service, ", cache_ttl_s: 30"))
    resolver = OwnershipResolver(charter, env={}, clock=clock)
    try:
        first = (await resolver.resolve(call("4821")))["refund-policy"]
        clock.now += 29
        second = (await resolver.resolve(call("4821")))["refund-policy"]
        other = (await resolver.resolve(call("4821", subject="cust-2")))["refund-policy"]
        clock.now += 2
        third = (await resolver.resolve(call("4821")))["refund-policy"]
    finally:
        await resolver.aclose()
    assert (first.cached, second.cached, other.cached, third.cached) == (False, True, False, False)
    assert (first.owned, second.owned, other.owned, third.owned) == (True, True, False, True)
    assert ownership_service.asked() == [("cust-1", "4821"), ("cust-2", "4821"), ("cust-1", "4821")]


async def test_failures_are_not_cached_and_the_cache_is_bounded(
    ownership_service: OwnershipService,
) -> None:
    resolver = OwnershipResolver(charter_with(http(ownership_service)), env={})
    cache = resolver.lookups["refund-policy"].cache
    cache.size = 3
    try:
        ownership_service.status = 500
        assert (await resolver.resolve(call("4821")))["refund-policy"].failed
        ownership_service.status = None
        assert (await resolver.resolve(call("4821")))["refund-policy"].owned is True
        for order in ("1", "2", "3", "4"):
            await resolver.resolve(call(order))
    finally:
        await resolver.aclose()
    assert len(cache) == 3
    assert len(ownership_service.seen) == 6


async def test_concurrency_is_limited(ownership_service: OwnershipService) -> None:
    ownership_service.delay_s = 0.3
    charter = charter_with(http(ownership_service, ", max_concurrency: 2, cache_ttl_s: 0"))
    resolver = OwnershipResolver(charter, env={})
    try:
        answers = await asyncio.gather(*(resolver.resolve(call(str(i))) for i in range(8)))
    finally:
        await resolver.aclose()
    assert all(a["refund-policy"].owned is False for a in answers)
    assert len(ownership_service.seen) == 8
    assert ownership_service.max_in_flight == 2


async def test_waiting_too_long_for_a_slot_fails_the_lookup(
    ownership_service: OwnershipService,
) -> None:
    # The 1st answers at 1.0 s, the 2nd waits 1.0 s for the slot, the 3rd would wait 2.0 s.
    ownership_service.delay_s = 1.0
    setting = http(ownership_service, ", max_concurrency: 1, cache_ttl_s: 0, timeout_s: 1.5")
    resolver = OwnershipResolver(charter_with(setting), env={})
    try:
        answers = await asyncio.gather(*(resolver.resolve(call(str(i))) for i in range(3)))
    finally:
        await resolver.aclose()
    details = sorted(str(a["refund-policy"].detail) for a in answers)
    assert sum("already in flight" in d for d in details) == 1, details


HOSTILE = ["../admin", "a b?c", "x/../../y#z", "..", "%2e%2e", "&owned=1"]


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_resource_ids_stay_one_percent_encoded_value(
    ownership_service: OwnershipService, hostile: str
) -> None:
    ownership_service.owned.add(("cust-1", hostile))
    resolver = OwnershipResolver(charter_with(http(ownership_service)), env={})
    try:
        got = (await resolver.resolve(call(hostile)))["refund-policy"]
    finally:
        await resolver.aclose()
    (seen,) = ownership_service.seen
    assert got.owned is True
    assert seen.raw_path.startswith("/owners/cust-1/orders/")
    assert seen.raw_path.count("/") == 4 and "?" not in seen.raw_path and not seen.query
    assert ownership_service.asked() == [("cust-1", hostile)]


async def test_query_templates_post_bodies_and_headers_from_the_environment(
    ownership_service: OwnershipService,
) -> None:
    get = f"{ownership_service.base}/owns?customer={{subject}}&order={{resource}}"
    charter = charter_with(
        f"{{argument: order_id, http: {{url: '{get}', headers_env: {{Authorization: CRM_TOKEN}}}}}}"
    )
    resolver = OwnershipResolver(charter, env={"CRM_TOKEN": "Bearer t0ken"})
    try:
        by_get = (await resolver.resolve(call("a&order=4821")))["refund-policy"]
    finally:
        await resolver.aclose()
    post = charter_with(
        f"{{argument: order_id, http: {{url: '{ownership_service.base}/owns', method: POST}}}}"
    )
    resolver = OwnershipResolver(post, env={})
    try:
        by_post = (await resolver.resolve(call("4822")))["refund-policy"]
    finally:
        await resolver.aclose()
    first, second = ownership_service.seen
    assert by_get.owned is False  # the injected "&order=4821" stayed part of the value
    assert first.query == {"customer": "cust-1", "order": "a&order=4821"}
    assert first.headers["authorization"] == "Bearer t0ken"
    assert by_post.owned is True and second.method == "POST"
    assert second.body == {"subject": "cust-1", "resource": "4822"}


def test_a_missing_header_variable_fails_at_start(ownership_service: OwnershipService) -> None:
    charter = charter_with(http(ownership_service, ", headers_env: {Authorization: CRM_TOKEN}"))
    with pytest.raises(ConfigurationError, match=r"\$CRM_TOKEN, which is not set"):
        OwnershipResolver(charter, env={})


async def test_no_subject_or_argument_asks_nobody(ownership_service: OwnershipService) -> None:
    resolver = OwnershipResolver(charter_with(http(ownership_service)), env={})
    try:
        assert await resolver.resolve(call("4821", subject=None)) == {}
        assert await resolver.resolve(call(None)) == {}
        assert await resolver.resolve(call({"id": 1})) == {}
    finally:
        await resolver.aclose()
    assert ownership_service.seen == []
