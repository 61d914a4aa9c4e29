"""A gateway on the example charter (plus a monitor) with an Observer wired in as the gateway
should call it: ``observe`` right after the request's audit record is committed, ``/metrics``
mounted next to the API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.gateway.app import build_app
from charter.gateway.factory import Services
from charter.gateway.keys import hash_key
from charter.gateway.service import Outcome
from charter.observability import Observer
from tests.gateway.conftest import ADMIN_KEY, make_services
from tests.monitors.charters import write_charter

MONITORS = [
    {
        "id": "refusals",
        "settings": {"statistic": "refusal_rate", "threshold": 0.1, "window": "1h"},
    }
]
LATENCY_S = 0.02  # the gateway measures it; these tests only need a known value


@dataclass
class Observed:
    services: Services
    observer: Observer
    client: httpx.AsyncClient
    charter_path: str
    database: str


def wire(services: Services, observer: Observer) -> None:
    """The call the gateway makes at the end of ``Gateway._finish``."""
    gateway = services.gateway
    finish = gateway._finish

    async def observed_finish(outcome: Outcome) -> None:
        await finish(outcome)
        observer.observe(outcome, LATENCY_S)

    gateway._finish = observed_finish  # type: ignore[method-assign]


Factory = Callable[..., Awaitable[Observed]]


@pytest.fixture
def observed_factory(tmp_path: Path) -> Iterator[Factory]:
    made: list[Observed] = []

    async def make(
        monitors: list[dict[str, Any]] | None = None,
        charter: dict[str, Any] | None = None,
        **observer_kwargs: Any,
    ) -> Observed:
        path = write_charter(
            tmp_path / "charter.yaml", MONITORS if monitors is None else monitors, **(charter or {})
        )
        services = make_services(tmp_path, path)
        # Replace the factory's observer with one whose latency the tests control.
        assert services.gateway.observer is not None
        services.gateway.observer.close()
        services.gateway.observer = None
        observer = Observer.for_gateway(services.gateway, **observer_kwargs)
        wire(services, observer)
        app = build_app(services.gateway, admin_key_hash=hash_key(ADMIN_KEY))
        app.router.routes.extend(observer.routes(services.gateway))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://charter"
        )
        database = f"sqlite:///{tmp_path}/charter.db"  # where make_services puts it
        made.append(Observed(services, observer, client, path, database))
        return made[-1]

    yield make
    for observed in made:
        observed.observer.close()
        asyncio.run(observed.services.aclose())
