"""The model proposes, Charter decides: refunds through the gateway, as issue 5 describes them."""

from __future__ import annotations

import json

import httpx
import pytest

from charter.audit.log import stored_leaf_bytes
from charter.gateway.factory import Services
from tests.gateway.conftest import ADMIN_KEY, SUPPORT_KEY

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"Bearer {SUPPORT_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
REFUND = {
    "type": "function",
    "function": {
        "name": "issue_refund",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount_usd": {"type": "number"}},
        },
    },
}
CUSTOMER = {"subject": "cust-17", "attributes": {"customer_orders": ["4821", "4822", "4823"]}}


def refund_chat(text: str, **extra: object) -> dict[str, object]:
    return {
        "model": "sim-small",
        "messages": [{"role": "user", "content": text}],
        "tools": [REFUND],
        "charter": CUSTOMER,
        **extra,
    }


async def test_refund_flow_through_chat(client: httpx.AsyncClient) -> None:
    small = (
        await client.post(
            "/v1/chat/completions", json=refund_chat("Please refund order 4821 $30"), headers=AUTH
        )
    ).json()
    (call,) = small["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"order_id": "4821", "amount_usd": 30}
    assert small["charter"]["actions"][0]["decision"] == "allow"

    large = (
        await client.post(
            "/v1/chat/completions", json=refund_chat("Please refund order 4822 $60"), headers=AUTH
        )
    ).json()
    message = large["choices"][0]["message"]
    assert not message.get("tool_calls")
    action = large["charter"]["actions"][0]
    assert action["decision"] == "review" and action["approval_id"]
    assert action["approval_id"] in message["content"] and "refund-limits" in message["content"]

    # A support lead approves; only then may it run.
    early = await client.post(f"/v1/charter/actions/{action['id']}/executed", headers=AUTH)
    assert early.status_code == 409
    pending = (await client.get("/admin/v1/approvals", headers=ADMIN)).json()["data"]
    assert [p["approval_id"] for p in pending] == [action["approval_id"]]
    approved = await client.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "loyal customer"},
        headers=ADMIN,
    )
    assert approved.status_code == 200, approved.text
    twice = await client.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "again"},
        headers=ADMIN,
    )
    assert twice.status_code == 409
    done = await client.post(f"/v1/charter/actions/{action['id']}/executed", headers=AUTH)
    assert done.status_code == 200, done.text

    third = (
        await client.post(
            "/v1/chat/completions", json=refund_chat("Please refund order 4823 $20"), headers=AUTH
        )
    ).json()
    assert third["charter"]["actions"][0]["decision"] == "allow"
    fourth = (
        await client.post(
            "/v1/chat/completions", json=refund_chat("Please refund order 4823 $10"), headers=AUTH
        )
    ).json()
    assert fourth["charter"]["actions"][0]["decision"] == "deny"
    assert "not allowed" in fourth["choices"][0]["message"]["content"]


async def test_refund_on_someone_elses_order_is_denied(client: httpx.AsyncClient) -> None:
    body = (
        await client.post(
            "/v1/chat/completions", json=refund_chat("Please refund order 5555 $10"), headers=AUTH
        )
    ).json()
    action = body["charter"]["actions"][0]
    assert action["decision"] == "deny"
    assert "ownership" in " ".join(action["reasons"])
    assert "own-orders-only" in body["choices"][0]["message"]["content"]


async def test_streamed_tool_calls_are_held_until_ruled_on(client: httpx.AsyncClient) -> None:
    body = refund_chat("Please refund order 5555 $10", stream=True)
    events = []
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
    deltas = [
        d for e in events for c in e.get("choices", []) for d in c["delta"].get("tool_calls", [])
    ]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))
    assert deltas == []  # the denied call never left the gateway, not even in pieces
    assert "was not allowed" in text


async def test_authorize_api_for_agent_frameworks(
    client: httpx.AsyncClient, services: Services
) -> None:
    ok = await client.post(
        "/v1/charter/actions/authorize",
        headers=AUTH,
        json={
            "tool": "issue_refund",
            "arguments": {"order_id": "4821", "amount_usd": 25},
            **CUSTOMER,
        },
    )
    assert ok.status_code == 200 and ok.json()["decision"] == "allow"
    bad = await client.post(
        "/v1/charter/actions/authorize",
        headers=AUTH,
        json={
            "tool": "issue_refund",
            "arguments": {"order_id": "48x", "amount_usd": "lots"},
            **CUSTOMER,
        },
    )
    assert bad.json()["decision"] == "deny"
    # Pins: a denied authorize stored nothing and so left no trace in the audit trail.
    (denied,) = [
        json.loads(leaf)
        for leaf in stored_leaf_bytes(services.store)
        if json.loads(leaf)["details"].get("event") == "denied"
    ]
    assert denied["principal"] == "support-bot" and denied["action"] == "block"
    assert denied["details"]["tool"] == "issue_refund" and "refund-limits" in denied["decision_ids"]
    forged = await client.post("/v1/charter/actions/act_forged/executed", headers=AUTH)
    assert forged.status_code == 404
    malformed = await client.post("/v1/charter/actions/authorize", headers=AUTH, json={"x": 1})
    assert malformed.status_code == 400
