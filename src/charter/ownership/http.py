"""Ownership asked of an HTTP service: ``GET`` (or ``POST``) a URL built from the subject and the
resource, and read a JSON boolean or a not-owned status from the answer.

The values are percent-encoded whole (``/``, ``?``, ``#``, ``&`` and ``.`` included), so a
resource id such as ``../admin`` stays one path segment and can never reach another endpoint;
the URL is sent as built (no re-normalisation), redirects are not followed, and the host is
fixed by the charter (the format refuses placeholders in it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from charter.document.model import OwnershipHttp
from charter.errors import ConfigurationError
from charter.ownership.lookup import LookupFailed
from charter.providers.http import Session, Timeouts

MAX_ANSWER_BYTES = 65_536
"""An ownership answer is a few bytes of JSON; a bigger one is refused, not read."""


def encode_value(value: str) -> str:
    """``value`` percent-encoded as one opaque URL component: every reserved character and
    every dot, so ``..`` cannot be read as a path step by the client or any proxy."""
    return quote(value, safe="").replace(".", "%2E")


def fill_url(template: str, subject: str, resource: str) -> str:
    """The URL to ask: ``template`` with its placeholders replaced by the encoded values."""
    return template.format(subject=encode_value(subject), resource=encode_value(resource))


class HttpLookup:
    """One ``ownership.http`` setting, with its headers read from the environment at start."""

    def __init__(self, control_id: str, settings: OwnershipHttp, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.source = f"http {settings.method} {settings.url}"
        self.timeout_s = settings.timeout_s
        self.cache_ttl_s = settings.cache_ttl_s
        self.max_concurrency = settings.max_concurrency
        self._headers = {"Accept": "application/json"}
        for header, name in settings.headers_env.items():
            value = env.get(name)
            if not value:
                raise ConfigurationError(
                    f"control `{control_id}` sends the {header} header of its ownership lookup "
                    f"from ${name}, which is not set",
                    hint=f"export {name}=<the value the ownership service expects>",
                )
            self._headers[header] = value
        self._not_owned = frozenset(settings.not_owned_status)
        self._session = Session(
            settings.max_concurrency, Timeouts(connect_s=self.timeout_s, read_s=self.timeout_s)
        )

    async def owns(self, subject: str, resource: str) -> tuple[bool, str]:
        """Whether ``subject`` owns ``resource``, and what the service said; ``LookupFailed``
        when it could not say (no answer in time, an unexpected status, a malformed body)."""
        url = URL(fill_url(self.settings.url, subject, resource), encoded=True)
        body: Any = None
        if self.settings.method == "POST":
            body = {"subject": subject, "resource": resource}
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.get().request(
                    self.settings.method,
                    url,
                    json=body,
                    headers=self._headers,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    if status in self._not_owned:
                        return False, f"answered {status}"
                    if not 200 <= status < 300:
                        raise LookupFailed(f"the ownership service answered {status}")
                    raw = await response.content.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            raise LookupFailed(f"no answer within {self.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise LookupFailed(f"the ownership service could not be reached ({exc})") from None
        return self._read(raw)

    def _read(self, raw: bytes) -> tuple[bool, str]:
        field = self.settings.owned_field
        if len(raw) > MAX_ANSWER_BYTES:
            raise LookupFailed(f"the answer is longer than {MAX_ANSWER_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            raise LookupFailed("the answer is not JSON") from None
        value = data.get(field) if isinstance(data, dict) else None
        if not isinstance(value, bool):
            raise LookupFailed(
                f"the answer has no JSON boolean `{field}` (got {json.dumps(value)[:40]})"
            )
        return value, f"{field}: {json.dumps(value)}"

    async def aclose(self) -> None:
        await self._session.aclose()
