"""Fixtures for the action service: charters, a service per store backend, a webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from charter.approvals import ActionService, WebhookSender
from charter.counters import MemoryCounters
from charter.document.loader import load_charter, load_charter_text
from charter.document.model import Charter
from charter.policy.engine import Engine
from charter.policy.runtime import Runtime
from charter.storage import Store

EXAMPLE = Path(__file__).parents[2] / "examples" / "support-desk" / "charter.yaml"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORDERS = {"customer_orders": ["4821", "4822", "4823", "4824", "4825"]}
SECRET = "s3cret-for-tests"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def example_charter() -> Charter:
    return load_charter(EXAMPLE).require()


def refund_charter(policy_extra: str = "", approval_extra: str = "") -> Charter:
    """The example's refund rules, with extra settings for the refund policy and its approval."""
    text = f"""\
format: 1
organization: Northwind
decisions:
  - {{id: refund-limits, statement: s, owner: o, risk: high, review_by: 2030-01-01,
     enforced_by: [refund-policy, refund-approval]}}
controls:
  - id: refund-policy
    kind: tool_policy
    serves: [refund-limits]
    settings:
      tool: issue_refund
      arguments:
        order_id: {{type: string, pattern: '^[0-9]{{4,10}}$'}}
        amount_usd: {{type: number, minimum: 0.01, maximum: 5000}}
      caps: [{{argument: amount_usd, max: 40, over: review}}]
      rates:
        - {{per: subject, count: 3, window: 1d}}
      ownership: {{argument: order_id, context: customer_orders}}
{policy_extra}
  - id: refund-approval
    kind: approval
    serves: [refund-limits]
    settings:
      reviewers: [reviewer]
      deadline: 4h
{approval_extra}
principals:
  - {{id: support, kind: team}}
  - {{id: support-bot, kind: app, member_of: support}}
  - {{id: ravi, kind: user, member_of: support, roles: [reviewer]}}
  - {{id: rosa, kind: user, roles: [reviewer]}}
  - {{id: alice, kind: user, roles: [admin]}}
"""
    return load_charter_text(text).require()


def make_service(
    charter: Charter, store: Store, *, counters: MemoryCounters | None = None, **kwargs: object
) -> ActionService:
    counters = counters or MemoryCounters()
    engine = Engine(charter, Runtime(counters=counters))
    kwargs.setdefault("sender", WebhookSender(backoff_s=0.01))
    kwargs.setdefault("env", {"HOOK_SECRET": SECRET})
    return ActionService(engine, store, counters, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def service(store: Store) -> ActionService:
    """The example charter's action service on each store backend, in-process counters."""
    return make_service(example_charter(), store)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on loopback that records every call and answers from a script."""

    url: str
    calls: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.calls.append(Received(self.path, dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            reply = b'{"ok": true}' if status == 200 else b'{"error": "try later"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
