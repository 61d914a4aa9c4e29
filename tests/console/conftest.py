"""The console on a real gateway: a copy of the support-desk example served by uvicorn on loopback,
console tokens for each role, a gated eval run with its report file, and headless Chromium.

Screenshots are taken by the end-to-end tests every run; they are written to ``docs/console``
only when ``CHARTER_CONSOLE_SCREENSHOTS=1`` (so a test run does not rewrite committed images),
otherwise to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from charter.console import issue_token, routes
from charter.gateway.app import build_app
from charter.gateway.factory import Services, build_services
from charter.gateway.keys import hash_key
from charter.settings import resolve
from tests.gateway.conftest import ADMIN_KEY, SUPPORT_KEY, free_port

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROLES = {"admin": "alice", "reviewer": "ravi", "auditor": "audrey", "grader": "gwen"}
REFUND_TOOL = {
    "type": "function",
    "function": {
        "name": "issue_refund",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount_usd": {"type": "number"}},
        },
    },
}


def console_app(services: Services, **kwargs: Any) -> Any:
    """The gateway's app with the console, whether or not ``build_app`` already adds it."""
    app = build_app(services.gateway, **kwargs)
    if not any(getattr(r, "path", "") == "/console/login" for r in app.router.routes):
        app.router.routes.extend(routes(services.gateway))
    return app


def make_console_services(desk: Path, state: Path) -> Services:
    settings = resolve(
        {
            "charter": str(desk / "charter.yaml"),
            "database": f"sqlite:///{state}/charter.db",
            "data_dir": str(state / "state"),
        },
        environ={},
    )
    return build_services(settings)


@dataclass
class ConsoleServer:
    """A gateway with the console on 127.0.0.1, and what the tests need to drive it."""

    services: Services
    port: int
    desk: Path
    tokens: dict[str, str]
    report: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refund(self, order: str, amount: int) -> dict[str, Any]:
        """Ask the assistant for a refund as the demo does; returns the action it produced."""
        body = {
            "model": "sim-small",
            "messages": [{"role": "user", "content": f"Please refund order {order} ${amount}"}],
            "tools": [REFUND_TOOL],
            "charter": {"subject": "cust-17", "attributes": {"customer_orders": [order]}},
        }
        answer = httpx.post(
            f"{self.url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {SUPPORT_KEY}"},
            timeout=30,
        )
        answer.raise_for_status()
        action: dict[str, Any] = answer.json()["charter"]["actions"][0]
        return action


def _eval_report(services: Services, desk: Path) -> str:
    """A real gateway-mode run of the example suite, written beside it and recorded."""
    from charter.evals.gate import evaluate_gate, gate_controls, record_run
    from charter.evals.report import write_json
    from charter.evals.runner import run_gateway
    from charter.evals.suite import load_suite

    charter = services.gateway.charter
    gate = gate_controls(charter)[0]
    suite = load_suite(desk / gate.settings.suite)
    cases = [c for c in suite.cases if c.category.value != "attack"][:8] + [
        c for c in suite.cases if c.category.value == "attack"
    ][:4]
    run = asyncio.run(run_gateway(str(desk / "charter.yaml"), suite, cases=cases, concurrency=4))
    result = evaluate_gate(run, gate.settings.thresholds, control_id=gate.id)
    name = f"{run.run_id}.json"
    write_json(run, desk / "evals" / name, result)
    record_run(services.audit, run, result)
    return name


def _spend_history(services: Services) -> None:
    """Two weeks of settled spend, as the ledger holds it after two weeks of traffic."""
    from charter.storage.base import SpendRow

    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rows = [
        SpendRow(f"req_history_{who}_{n}", who, "sim-small", 900, 300, cost * (1 + n % 4), at)
        for n in range(1, 14)
        for who, cost in (("support-bot", 41_000), ("marketing-writer", 12_000))
        for at in [today - dt.timedelta(days=n)]
    ]
    services.store.add_spend(rows)


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    base = tmp_path_factory.mktemp("console")
    desk = base / "desk"
    shutil.copytree(ROOT / "examples" / "support-desk", desk)
    services = make_console_services(desk, base)
    app = console_app(services, admin_key_hash=hash_key(ADMIN_KEY))
    tokens = {
        role: issue_token(services.store, services.gateway.charter, who)[0]
        for role, who in ROLES.items()
    }
    report = _eval_report(services, desk)
    _spend_history(services)
    services.audit.checkpoint()  # as a gateway that ran before has: verification needs one
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield ConsoleServer(services, port, desk, tokens, report)
    finally:
        server.should_exit = True
        thread.join(10)
        asyncio.run(services.aclose())


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """A gateway on a copy of the example, for in-process tests."""
    shutil.copytree(ROOT / "examples" / "support-desk", tmp_path / "desk")
    services = make_console_services(tmp_path / "desk", tmp_path)
    yield services
    asyncio.run(services.aclose())


async def sign_in_http(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign in through the form as a browser would; the response to the POST."""
    page = await client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return await client.post(
        "/console/login", data={"csrf": csrf.group(1), "token": token, "next": "/console/audit"}
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where this test's screenshots go (docs/console when asked for, see the module doc)."""
    if os.environ.get("CHARTER_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path


def sign_in(browser: Any, server: ConsoleServer, role: str) -> Any:
    """A new browser page signed in as the user holding ``role``, with the keyboard."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.set_default_timeout(5000)
    page = context.new_page()
    page.goto(f"{server.url}/console/")
    assert page.url.startswith(f"{server.url}/console/login")
    page.get_by_label("Your console token").fill(server.tokens[role])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/decisions$"))
    return page


def csrf_of(page: Any) -> str:
    """The session's CSRF token, as every form of the page carries it."""
    value = page.locator('input[name="csrf"]').first.get_attribute("value")
    assert value
    return str(value)
