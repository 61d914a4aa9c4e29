"""Ownership looked up by Charter itself, end to end: the gateway's authorization API, a tool call
in a chat answer, and `charter eval` in policy mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from charter.evals.runner import run_policy
from charter.evals.suite import load_suite
from charter.gateway.app import build_app
from charter.gateway.keys import hash_key
from tests.gateway.conftest import ADMIN_KEY, EXAMPLE, SUPPORT_KEY, make_services
from tests.ownership.conftest import OwnershipService

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"Bearer {SUPPORT_KEY}"}
CONTEXT_SETTING = "      ownership:\n        argument: order_id\n        context: customer_orders\n"


def lookup_charter(tmp_path: Path, service: OwnershipService, port: int | None = None) -> Path:
    """The support-desk example with its ownership looked up at ``service`` instead of read
    from the caller's context."""
    text = Path(EXAMPLE).read_text()
    assert CONTEXT_SETTING in text
    url = f"http://127.0.0.1:{port or service.port}/owners/{{subject}}/orders/{{resource}}"
    setting = (
        "      ownership:\n        argument: order_id\n"
        f"        http: {{url: '{url}', timeout_s: 0.5}}\n"
    )
    path = tmp_path / "charter.yaml"
    path.write_text(text.replace(CONTEXT_SETTING, setting))
    return path


@pytest.fixture
async def client(
    tmp_path: Path, ownership_service: OwnershipService
) -> AsyncIterator[httpx.AsyncClient]:
    ownership_service.owned.add(("cust-17", "4821"))
    services = make_services(tmp_path, str(lookup_charter(tmp_path, ownership_service)))
    app = build_app(services.gateway, admin_key_hash=hash_key(ADMIN_KEY))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://charter") as http:
            yield http
    finally:
        await services.aclose()  # in the loop the lookups' connections belong to


async def authorize(client: httpx.AsyncClient, order: str, **extra: object) -> dict[str, object]:
    body = {
        "tool": "issue_refund",
        "arguments": {"order_id": order, "amount_usd": 20},
        "subject": "cust-17",
        **extra,
    }
    response = await client.post("/v1/charter/actions/authorize", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_authorization_api_asks_the_ownership_service(
    client: httpx.AsyncClient, ownership_service: OwnershipService
) -> None:
    mine = await authorize(client, "4821")
    # The caller claims the order is its customer's; the service that knows says otherwise.
    lying = await authorize(client, "5001", attributes={"customer_orders": ["5001"]})
    assert mine["decision"] == "allow"
    assert lying["decision"] == "deny"
    assert any("5001 is not owned by subject cust-17" in str(r) for r in lying["reasons"])  # type: ignore[attr-defined]
    assert ownership_service.asked() == [("cust-17", "4821"), ("cust-17", "5001")]
    ownership_service.status = 503  # cached answers still stand; a new order fails closed
    again = await authorize(client, "4821")
    down = await authorize(client, "4822")
    assert again["decision"] == "allow" and down["decision"] == "deny"
    assert any("answered 503" in str(r) and "on_error: deny" in str(r) for r in down["reasons"])  # type: ignore[attr-defined]


async def test_a_tool_call_in_a_chat_answer_is_looked_up(
    client: httpx.AsyncClient, ownership_service: OwnershipService
) -> None:
    refund = {
        "type": "function",
        "function": {
            "name": "issue_refund",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount_usd": {"type": "number"}},
            },
        },
    }

    async def chat(text: str) -> dict[str, object]:
        body = {
            "model": "sim-small",
            "messages": [{"role": "user", "content": text}],
            "tools": [refund],
            "charter": {"subject": "cust-17", "attributes": {"customer_orders": ["4822"]}},
        }
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        return dict(response.json())

    allowed = await chat("Please refund order 4821 $30")
    denied = await chat("Please refund order 4822 $30")
    (call,) = allowed["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert json.loads(call["function"]["arguments"])["order_id"] == "4821"
    message = denied["choices"][0]["message"]  # type: ignore[index]
    assert not message.get("tool_calls")
    assert "4822 is not owned by subject cust-17" in message["content"]
    assert ownership_service.asked() == [("cust-17", "4821"), ("cust-17", "4822")]


async def test_charter_eval_runs_the_lookups(
    tmp_path: Path, ownership_service: OwnershipService
) -> None:
    from charter.document.loader import load_charter

    ownership_service.owned.add(("cust-1004", "5120"))
    charter = load_charter(lookup_charter(tmp_path, ownership_service)).require()
    suite = load_suite(Path(EXAMPLE).parent / "evals" / "support.yaml")
    cases = [c for c in suite.cases if c.id.startswith("ownership-")]
    assert len(cases) >= 2
    run = await run_policy(charter, suite, cases=cases)
    by_id = {r.case_id: r for r in run.results}
    assert by_id["ownership-normal-own-order"].passed
    assert ("cust-1004", "5120") in ownership_service.asked()
    # Nothing answers on the discard port: the policy run fails closed, with the reason.
    closed = load_charter(lookup_charter(tmp_path, ownership_service, port=9)).require()
    run = await run_policy(closed, suite, cases=cases)
    normal = next(r for r in run.results if r.case_id == "ownership-normal-own-order")
    assert not normal.passed
