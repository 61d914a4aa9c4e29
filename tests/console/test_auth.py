"""Sign-in, sessions and CSRF, in-process against the ASGI app (no browser needed for headers)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from charter.console import issue_token
from charter.console.auth import SESSION_COOKIE, TOKEN_PREFIX
from charter.errors import InvalidRequest
from charter.gateway.factory import Services
from tests.console.conftest import console_app, sign_in_http

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://charter") as http:
        yield http


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_session_cookie_is_httponly_strict_and_scoped(
    client: httpx.AsyncClient, services: Services
) -> None:
    token, _ = issue_token(services.store, services.gateway.charter, "audrey")
    signed = await sign_in_http(client, token)
    assert signed.status_code == 303 and signed.headers["location"] == "/console/audit"
    cookie = next(
        c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https gets Secure
    page = await client.get("/console/audit")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_https_sessions_get_secure_cookies(services: Services) -> None:
    app = console_app(services)
    token, _ = issue_token(services.store, services.gateway.charter, "audrey")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://charter") as http:
        signed = await sign_in_http(http, token)
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "Secure" in cookie


async def test_every_post_needs_the_session_csrf_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    token, _ = issue_token(services.store, services.gateway.charter, "alice")
    await sign_in_http(client, token)
    page = await client.get("/console/users")
    size = services.store.audit_size()
    for csrf in (None, "forged", csrf_in(page.text)[:-2]):
        form = {"principal": "ravi"} | ({"csrf": csrf} if csrf else {})
        refused = await client.post("/console/users/tokens", data=form)
        assert refused.status_code == 403 and "security token" in refused.text
    assert services.store.list_console_tokens("ravi") == []
    assert services.store.audit_size() == size
    issued = await client.post(
        "/console/users/tokens", data={"principal": "ravi", "csrf": csrf_in(page.text)}
    )
    assert issued.status_code == 200 and TOKEN_PREFIX in issued.text
    assert len(services.store.list_console_tokens("ravi")) == 1
    assert services.store.audit_size() == size + 1  # the issuance is on record


async def test_sign_in_refuses_api_keys_revoked_tokens_and_forged_forms(
    client: httpx.AsyncClient, services: Services
) -> None:
    refused = await sign_in_http(
        client, "sk-demo-support-bot"
    )  # a virtual key is not a console token
    assert refused.status_code == 403 and "not a console token" in refused.text
    token, row = issue_token(services.store, services.gateway.charter, "ravi")
    no_form = await client.post("/console/login", data={"token": token})
    assert no_form.status_code == 403 and "expired" in no_form.text
    assert (await sign_in_http(client, token)).status_code == 303
    assert (await client.get("/console/approvals")).status_code == 200
    import datetime as dt

    services.store.revoke_console_token(row.id, dt.datetime.now(dt.UTC))
    after = await client.get("/console/approvals")
    assert after.status_code == 303 and after.headers["location"].startswith("/console/login")
    again = await sign_in_http(client, token)
    assert again.status_code == 403 and "revoked" in again.text


async def test_a_tampered_cookie_is_not_a_session(
    client: httpx.AsyncClient, services: Services
) -> None:
    token, _ = issue_token(services.store, services.gateway.charter, "ravi")
    await sign_in_http(client, token)
    payload, stamp, signature = client.cookies[SESSION_COOKIE].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["p"] == "ravi"
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "p": "alice"}).encode()).decode()
    client.cookies.clear()
    # The same token and signature, claiming to be alice: the signature no longer matches.
    client.cookies.set(SESSION_COOKIE, f"{forged.rstrip('=')}.{stamp}.{signature}", path="/console")
    response = await client.get("/console/users")
    assert response.status_code == 303 and "/console/login" in response.headers["location"]


async def test_sign_in_goes_only_to_console_pages(
    client: httpx.AsyncClient, services: Services
) -> None:
    token, _ = issue_token(services.store, services.gateway.charter, "ravi")
    page = await client.get("/console/login")
    signed = await client.post(
        "/console/login",
        data={"csrf": csrf_in(page.text), "token": token, "next": "//evil.example/console/"},
    )
    assert signed.headers["location"] == "/console/decisions"


async def test_static_htmx_is_served_with_its_licence(client: httpx.AsyncClient) -> None:
    script = await client.get("/console/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:2000]
    licence = await client.get("/console/static/htmx.LICENSE")
    assert "Zero-Clause BSD" in licence.text


def test_tokens_are_only_for_users_with_roles(services: Services) -> None:
    charter = services.gateway.charter
    with pytest.raises(InvalidRequest, match="is a app, not a user"):
        issue_token(services.store, charter, "support-bot")
    with pytest.raises(InvalidRequest, match="not a principal"):
        issue_token(services.store, charter, "mallory")
    token, row = issue_token(services.store, charter, "gwen", "laptop")
    assert token.startswith(TOKEN_PREFIX) and token not in repr(row)
    stored = services.store.find_console_token(row.key_hash)
    assert stored == row and services.store.find_key(row.key_hash) is None
