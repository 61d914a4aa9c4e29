"""Staged and reversible actions and circuit breakers through the gateway's admin API (issue 5):
an e-mail drafted for review and sent once through a real webhook receiver, a refund undone
through its compensating call, a breaker tripped by a spike and reset with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.approvals import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from charter.audit.log import stored_leaf_bytes
from charter.gateway.app import build_app
from charter.gateway.factory import Services
from charter.gateway.keys import hash_key
from charter.storage import Store
from tests.gateway.conftest import ADMIN_KEY, EXAMPLE, SUPPORT_KEY, make_services

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"Bearer {SUPPORT_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
SECRETS = {"OUTBOX_HOOK_KEY": "outbox-secret-for-tests", "REFUNDS_HOOK_KEY": "refunds-secret"}
SEND_EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "parameters": {
            "type": "object",
            "properties": {
                "to_email": {"type": "string"},
                "subject": {"type": "string"},
                "message": {"type": "string"},
            },
        },
    },
}
ORDERS = {"customer_orders": ["4821", "4822", "4823"]}


# --- a receiver that behaves as a mail relay or a payments service should -------------------------


@dataclass
class Outbox:
    """A webhook receiver on loopback: it checks Charter's signature and acts once per
    Idempotency-Key (a repeated key gets the first answer again; nothing is sent twice)."""

    url: str
    calls: list[tuple[str, str]] = field(default_factory=list)  # (path, key) of every call
    done: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> acted on
    lose_answers: int = 0  # act, then answer 503 as if the answer were lost: the sender retries
    refuse: int = 0  # answer 422 without acting: a final refusal
    unsigned: int = 0  # calls refused for a bad signature

    def sent(self, path: str) -> list[dict[str, Any]]:
        """The payloads acted on at ``path``, once each."""
        return [payload for where, payload in self.done.values() if where == path]


SIGNED_WITH = {"/outbox": "OUTBOX_HOOK_KEY", "/refunds/cancel": "REFUNDS_HOOK_KEY"}


@contextlib.contextmanager
def running_outbox() -> Iterator[Outbox]:
    """An ``Outbox`` on a free loopback port, stopped at the end."""
    lock = threading.Lock()
    state: Outbox

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            secret = SECRETS[SIGNED_WITH[self.path]].encode()
            signed = verify(
                secret,
                self.headers.get(TIMESTAMP_HEADER, ""),
                body,
                self.headers.get(SIGNATURE_HEADER, ""),
            )
            key = self.headers.get(IDEMPOTENCY_HEADER, "")
            with lock:
                state.calls.append((self.path, key))
                if not signed or not key:
                    state.unsigned += 1
                    status = 401
                elif state.refuse:
                    state.refuse -= 1
                    status = 422
                else:
                    state.done.setdefault(key, (self.path, json.loads(body)))
                    status = 200
                    if state.lose_answers:
                        state.lose_answers -= 1
                        status = 503
            reply = json.dumps({"ok": status == 200, "key": key}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Outbox(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def staged_charter(directory: Path, receiver_url: str, *, attempts: int = 3) -> Path:
    """The example charter as an operator runs it with webhooks: e-mails are sent by the outbox,
    refunds are cancelled by the payments service. Nothing else changes."""
    text = EXAMPLE_PATH.read_text()
    additions = {
        "      hold: 1h\n": f"      execute: {{url: '{receiver_url}/outbox', secret_env: "
        f"OUTBOX_HOOK_KEY, max_attempts: {attempts}, timeout_s: 5}}\n",
        "      reversible: true\n": f"      compensate: {{url: '{receiver_url}/refunds/cancel', "
        f"secret_env: REFUNDS_HOOK_KEY, max_attempts: {attempts}, timeout_s: 5}}\n",
    }
    for anchor, line in additions.items():
        assert text.count(anchor) == 1, anchor
        text = text.replace(anchor, anchor + line)
    path = directory / "charter.yaml"
    path.write_text(text)
    return path


EXAMPLE_PATH = Path(EXAMPLE)


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    with running_outbox() as box:
        yield box


@pytest.fixture
def staged(tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    services = make_services(tmp_path, str(staged_charter(tmp_path, outbox.url)))
    assert services.gateway.actions is not None
    services.gateway.actions.service.sender.backoff_s = 0.01  # retries without the real waits
    yield services
    asyncio.run(services.aclose())


@pytest.fixture
async def api(staged: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(staged.gateway, admin_key_hash=hash_key(ADMIN_KEY))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://charter") as http:
        yield http


def audit_records(store: Store, action_id: str | None = None, *, at_least: int = 1) -> list[Any]:
    """The audit records about one action (or every breaker record), once committed."""
    deadline = time.monotonic() + 5
    while True:
        records = [json.loads(b) for b in stored_leaf_bytes(store)]
        if action_id is None:
            mine = [r for r in records if r["details"].get("event", "").startswith("breaker_")]
        else:
            mine = [r for r in records if r["details"].get("action_id") == action_id]
        if len(mine) >= at_least or time.monotonic() > deadline:
            return mine
        time.sleep(0.02)


async def draft_email(api: httpx.AsyncClient, text: str) -> dict[str, Any]:
    body = {
        "model": "sim-small",
        "messages": [{"role": "user", "content": text}],
        "tools": [SEND_EMAIL],
        "charter": {"subject": "cust-17"},
    }
    answer = (await api.post("/v1/chat/completions", json=body, headers=AUTH)).json()
    assert not answer["choices"][0]["message"].get("tool_calls")  # the draft never reached the app
    (action,) = answer["charter"]["actions"]
    action["note"] = answer["choices"][0]["message"]["content"]
    return dict(action)


async def authorize_refund(
    api: httpx.AsyncClient, subject: str, order: str, amount: float
) -> dict[str, Any]:
    response = await api.post(
        "/v1/charter/actions/authorize",
        headers=AUTH,
        json={
            "tool": "issue_refund",
            "arguments": {"order_id": order, "amount_usd": amount},
            "subject": subject,
            "attributes": ORDERS,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- drafts over sends ----------------------------------------------------------------------------


async def test_an_email_is_drafted_approved_and_sent_exactly_once(
    api: httpx.AsyncClient, staged: Services, outbox: Outbox
) -> None:
    action = await draft_email(api, "Please email jane.doe@customer.example: your parcel shipped")
    assert action["decision"] == "review" and action["approval_id"]
    assert "no-unreviewed-outbound-email" in action["note"]
    assert action["approval_id"] in action["note"]
    assert outbox.calls == []  # a draft: nothing leaves before a person has read it

    early = await api.post(f"/v1/charter/actions/{action['id']}/executed", headers=AUTH)
    assert early.status_code == 409 and "waiting for approval" in early.text
    [pending] = (await api.get("/admin/v1/approvals", headers=ADMIN)).json()["data"]
    assert pending["arguments"]["to_email"] == "jane.doe@customer.example"
    assert pending["control"] == "outbound-email-policy"

    approved = await api.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "wording checked"},
        headers=ADMIN,
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "executed"  # Charter sent it through the outbox webhook
    assert approved.json()["outcome"]["execute"]["status"] == 200
    assert outbox.calls == [("/outbox", action["id"])]  # the action id is the Idempotency-Key
    [mail] = outbox.sent("/outbox")
    assert mail["type"] == "action.execute" and mail["reviewer"] == "ravi"
    assert mail["arguments"]["to_email"] == "jane.doe@customer.example"

    again = await api.post(f"/admin/v1/actions/{action['id']}/execute", headers=ADMIN)
    assert again.status_code == 409 and "already executed" in again.text
    reported = await api.post(f"/v1/charter/actions/{action['id']}/executed", headers=AUTH)
    assert reported.status_code == 409
    assert len(outbox.calls) == 1 and len(outbox.sent("/outbox")) == 1
    shown = (await api.get(f"/admin/v1/actions/{action['id']}", headers=ADMIN)).json()
    assert shown["status"] == "executed" and shown["review_reason"] == "wording checked"

    steps = audit_records(staged.store, action["id"], at_least=3)
    assert [r["details"]["event"] for r in steps] == ["review_requested", "approved", "executed"]
    assert steps[1]["details"]["reviewer"] == "ravi"
    assert steps[2]["details"]["webhook_status"] == 200
    assert all(r["decision_ids"] == ["no-unreviewed-outbound-email"] for r in steps)


async def test_a_lost_answer_is_retried_with_the_same_key_and_mails_once(
    api: httpx.AsyncClient, staged: Services, outbox: Outbox
) -> None:
    action = await draft_email(api, "Please email jane.doe@customer.example: it shipped")
    # The relay sends the mail but every answer of the first execution is lost (3 attempts).
    outbox.lose_answers = 3
    approved = await api.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "fine"},
        headers=ADMIN,
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["outcome"]["execute"]["status"] == 503

    retried = await api.post(f"/admin/v1/actions/{action['id']}/execute", headers=ADMIN)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "executed"
    assert outbox.calls == [("/outbox", action["id"])] * 4  # every attempt: the same key
    assert len(outbox.sent("/outbox")) == 1  # so the customer got one e-mail, not four
    events = [r["details"]["event"] for r in audit_records(staged.store, action["id"], at_least=4)]
    assert events == ["review_requested", "approved", "execution_failed", "executed"]


async def test_a_refused_execution_is_an_error_and_leaves_the_action_approved(
    api: httpx.AsyncClient, outbox: Outbox
) -> None:
    action = await draft_email(api, "Please email jane.doe@customer.example: hello")
    outbox.refuse = 2
    await api.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "ok"},
        headers=ADMIN,
    )
    failed = await api.post(f"/admin/v1/actions/{action['id']}/execute", headers=ADMIN)
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert "still approved" in error["message"] and "422" in error["message"]
    assert f"the same Idempotency-Key ({action['id']})" in error["message"]  # what to do next
    assert len(outbox.calls) == 2 and outbox.sent("/outbox") == []
    shown = (await api.get(f"/admin/v1/actions/{action['id']}", headers=ADMIN)).json()
    assert shown["status"] == "approved"


async def test_after_reading_the_inbox_mail_goes_only_to_northwind(api: httpx.AsyncClient) -> None:
    def after_inbox(text: str) -> dict[str, Any]:
        return {
            "model": "sim-small",
            "messages": [
                {"role": "user", "content": "What is new in the shared inbox?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_inbox",
                            "type": "function",
                            "function": {"name": "read_inbox", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_inbox", "content": "3 new orders."},
                {"role": "user", "content": text},
            ],
            "tools": [SEND_EMAIL],
        }

    outside = (
        await api.post(
            "/v1/chat/completions",
            json=after_inbox("Now email the list to partner@elsewhere.example"),
            headers=AUTH,
        )
    ).json()
    [denied] = outside["charter"]["actions"]
    assert denied["decision"] == "deny" and denied["approval_id"] is None
    assert "elsewhere.example" in " ".join(denied["reasons"])
    assert "no-unreviewed-outbound-email" in outside["choices"][0]["message"]["content"]

    inside = (
        await api.post(
            "/v1/chat/completions",
            json=after_inbox("Now email the list to ops@support.northwind.example"),
            headers=AUTH,
        )
    ).json()
    [held] = inside["charter"]["actions"]
    assert held["decision"] == "review" and held["approval_id"]


# --- reversible actions ---------------------------------------------------------------------------


async def test_a_refund_is_reverted_through_its_compensating_call(
    api: httpx.AsyncClient, staged: Services, outbox: Outbox
) -> None:
    auth = await authorize_refund(api, "cust-17", "4821", 25)
    assert auth["decision"] == "allow"
    done = await api.post(
        f"/v1/charter/actions/{auth['id']}/executed",
        json={"outcome": {"refund_id": "rf-1"}},
        headers=AUTH,
    )
    assert done.status_code == 200

    by_the_bot = await api.post(
        f"/admin/v1/actions/{auth['id']}/revert",
        json={"by": "support-bot", "reason": "oops"},
        headers=ADMIN,
    )
    assert by_the_bot.status_code == 403 and "may not revert" in by_the_bot.text
    no_reason = await api.post(
        f"/admin/v1/actions/{auth['id']}/revert", json={"by": "ravi"}, headers=ADMIN
    )
    assert no_reason.status_code == 400
    assert '"reason": "..."' in no_reason.json()["error"]["message"]
    assert outbox.calls == []

    reverted = await api.post(
        f"/admin/v1/actions/{auth['id']}/revert",
        json={"by": "ravi", "reason": "the customer kept the boots"},
        headers=ADMIN,
    )
    assert reverted.status_code == 200, reverted.text
    body = reverted.json()
    assert body["status"] == "reverted"
    assert body["outcome"]["refund_id"] == "rf-1"  # what the caller reported is kept
    assert body["outcome"]["revert"]["by"] == "ravi"
    assert outbox.calls == [("/refunds/cancel", f"{auth['id']}:revert")]
    [cancel] = outbox.sent("/refunds/cancel")
    assert cancel["type"] == "action.compensate"
    assert cancel["arguments"] == {"order_id": "4821", "amount_usd": 25}

    twice = await api.post(
        f"/admin/v1/actions/{auth['id']}/revert",
        json={"by": "ravi", "reason": "again"},
        headers=ADMIN,
    )
    assert twice.status_code == 409 and "was reverted" in twice.text
    assert len(outbox.calls) == 1

    [*_, record] = audit_records(staged.store, auth["id"], at_least=3)
    assert record["details"]["event"] == "reverted" and record["details"]["by"] == "ravi"
    assert record["reason"] == "the customer kept the boots"
    assert record["details"]["webhook_status"] == 200


async def test_an_email_cannot_be_unsent(api: httpx.AsyncClient) -> None:
    action = await draft_email(api, "Please email jane.doe@customer.example: hi")
    await api.post(
        f"/admin/v1/approvals/{action['approval_id']}/approve",
        json={"reviewer": "ravi", "reason": "ok"},
        headers=ADMIN,
    )
    revert = await api.post(
        f"/admin/v1/actions/{action['id']}/revert",
        json={"by": "alice", "reason": "typo"},
        headers=ADMIN,
    )
    assert revert.status_code == 400 and "send_email is not reversible" in revert.text


# --- circuit breakers -----------------------------------------------------------------------------


async def test_a_refund_spike_trips_the_breaker_and_an_admin_resets_it(
    api: httpx.AsyncClient, staged: Services
) -> None:
    [before] = [
        b
        for b in (await api.get("/admin/v1/breakers", headers=ADMIN)).json()["data"]
        if b["tool"] == "issue_refund"
    ]
    assert before["tripped"] is False
    assert before["configured"] == {"max_executed": 20, "window": "10m"}

    # 21 refunds in a few seconds (3 per customer, as the caps allow) trip it: more than 20.
    for n in range(21):
        auth = await authorize_refund(api, f"cust-{n // 3}", "4821", 10)
        assert auth["decision"] == "allow", (n, auth["reasons"])
        done = await api.post(f"/v1/charter/actions/{auth['id']}/executed", headers=AUTH)
        assert done.status_code == 200

    [tripped] = [
        b
        for b in (await api.get("/admin/v1/breakers", headers=ADMIN)).json()["data"]
        if b["tool"] == "issue_refund"
    ]
    assert tripped["tripped"] is True and tripped["by"] == "charter"
    assert "21 issue_refund calls executed in the last 10m, more than 20" in tripped["reason"]

    paused = await authorize_refund(api, "cust-99", "4822", 5)
    assert paused["decision"] == "deny"
    assert "circuit breaker was tripped by charter" in paused["reasons"][0]
    assert [v["evidence"]["rules"] for v in paused["verdicts"]] == [[{"rule": "breaker"}]]

    no_reason = await api.post(
        "/admin/v1/breakers/issue_refund/reset", json={"by": "alice", "reason": " "}, headers=ADMIN
    )
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    not_admin = await api.post(
        "/admin/v1/breakers/issue_refund/reset",
        json={"by": "ravi", "reason": "looks fine"},
        headers=ADMIN,
    )
    assert not_admin.status_code == 403 and "ravi is not an admin" in not_admin.text
    assert (await authorize_refund(api, "cust-99", "4822", 5))["decision"] == "deny"

    reset = await api.post(
        "/admin/v1/breakers/issue_refund/reset",
        json={"by": "alice", "reason": "the spike was the spring sale"},
        headers=ADMIN,
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["tripped"] is False and reset.json()["by"] == "alice"
    assert (await authorize_refund(api, "cust-99", "4822", 5))["decision"] == "allow"

    records = audit_records(staged.store, at_least=2)
    assert [(r["details"]["event"], r["details"]["by"], r["reason"]) for r in records] == [
        ("breaker_tripped", "charter", tripped["reason"]),
        ("breaker_reset", "alice", "the spike was the spring sale"),
    ]


async def test_a_tripped_breaker_denies_chat_tool_calls_naming_it(api: httpx.AsyncClient) -> None:
    tripped = await api.post(
        "/admin/v1/breakers/send_email/trip",
        json={"by": "alice", "reason": "the relay is sending spam"},
        headers=ADMIN,
    )
    assert tripped.status_code == 200 and tripped.json()["tripped"] is True
    assert tripped.json()["configured"] is None  # no automatic limit: tripped by hand only
    answer = (
        await api.post(
            "/v1/chat/completions",
            json={
                "model": "sim-small",
                "messages": [{"role": "user", "content": "Email jane@customer.example hello"}],
                "tools": [SEND_EMAIL],
            },
            headers=AUTH,
        )
    ).json()
    [action] = answer["charter"]["actions"]
    assert action["decision"] == "deny"
    content = answer["choices"][0]["message"]["content"]
    assert "circuit breaker was tripped by alice" in content
    assert "the relay is sending spam" in content and "no-unreviewed-outbound-email" in content


# --- bad input changes nothing --------------------------------------------------------------------


async def test_admin_action_routes_refuse_bad_input(api: httpx.AsyncClient) -> None:
    refund = await authorize_refund(api, "cust-1", "4821", 5)
    email = await draft_email(api, "Please email jane.doe@customer.example: hello")

    async def status(method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        response = await api.request(method, path, **kwargs)
        return response.status_code, response.json()["error"]["message"]

    cases: list[tuple[tuple[int, str], int, str]] = [
        (await status("POST", f"/admin/v1/actions/{email['id']}/execute"), 401, "admin key"),
        (
            await status("POST", "/admin/v1/actions/act_forged/execute", headers=ADMIN),
            404,
            "no action 'act_forged'",
        ),
        (
            await status("POST", f"/admin/v1/actions/{email['id']}/execute", headers=ADMIN),
            409,
            "waiting for approval",
        ),
        (
            await status("POST", f"/admin/v1/actions/{refund['id']}/execute", headers=ADMIN),
            400,
            "names no execute webhook",
        ),
        (
            await status("POST", f"/admin/v1/actions/{refund['id']}/revert", headers=ADMIN),
            400,
            "has no body",
        ),
        (
            await status(
                "POST",
                f"/admin/v1/actions/{refund['id']}/revert",
                json={"by": "alice", "reason": "x"},
                headers=ADMIN,
            ),
            409,
            "is authorized and not yet executed",
        ),
        (await status("GET", "/admin/v1/actions?status=done", headers=ADMIN), 400, "done"),
        (await status("GET", "/admin/v1/actions?limit=0", headers=ADMIN), 400, "limit"),
        (
            await status(
                "POST",
                "/admin/v1/breakers/wire_money/trip",
                json={"by": "alice", "reason": "x"},
                headers=ADMIN,
            ),
            404,
            "no tool_policy governs 'wire_money'",
        ),
        (
            await status(
                "POST",
                "/admin/v1/breakers/issue_refund/explode",
                json={"by": "alice", "reason": "x"},
                headers=ADMIN,
            ),
            404,
            "trip or .../reset",
        ),
        (
            await status(
                "POST", "/admin/v1/breakers/issue_refund/trip", json=["alice"], headers=ADMIN
            ),
            400,
            '"by"',
        ),
    ]
    for (got, text), want, says in cases:
        assert (got, says in text) == (want, True), text

    listed = (await api.get("/admin/v1/actions?status=pending", headers=ADMIN)).json()["data"]
    assert [a["id"] for a in listed] == [email["id"]]  # nothing above changed anything
    everything = (await api.get("/admin/v1/actions", headers=ADMIN)).json()["data"]
    assert {a["id"]: a["status"] for a in everything} == {
        email["id"]: "pending",
        refund["id"]: "authorized",
    }
    breakers = (await api.get("/admin/v1/breakers", headers=ADMIN)).json()["data"]
    assert not any(b["tripped"] for b in breakers)
    assert {b["tool"] for b in breakers} == {"issue_refund", "send_email"}
