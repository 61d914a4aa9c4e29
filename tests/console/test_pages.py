"""Page contents that the end-to-end tests cannot reach through a valid charter."""

from __future__ import annotations

import re

import httpx
import pytest

from charter.console import issue_token
from charter.gateway.factory import Services
from tests.console.conftest import console_app, sign_in_http

pytestmark = pytest.mark.anyio


async def test_uncovered_decisions_and_orphan_controls_are_red(services: Services) -> None:
    # A charter being edited: `charter check` refuses both, so a gateway never enforces them,
    # but the console must show them plainly when it reads such a charter.
    charter = services.gateway.charter
    promise = charter.decision("fair-use").model_copy(
        update={"id": "unenforced-promise", "enforced_by": []}
    )
    stray = charter.control("secrets-guard").model_copy(update={"id": "stray-guard", "serves": []})
    services.gateway.charter = charter.model_copy(
        update={"decisions": [*charter.decisions, promise], "controls": [*charter.controls, stray]}
    )
    app = console_app(services)
    token, _ = issue_token(services.store, charter, "audrey")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://charter") as client:
        await sign_in_http(client, token)
        page = (await client.get("/console/decisions")).text
    row = re.search(r'<tr id="decision-unenforced-promise" class="bad">(.*?)</tr>', page, re.S)
    assert row is not None and "uncovered" in row.group(1)
    assert re.search(r'<tr id="decision-fair-use">', page)  # covered ones are not red
    assert "1 uncovered" in page and "<code>stray-guard</code>" in page
    assert "A control with no decision enforces an accident" in page
