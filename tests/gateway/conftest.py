"""A gateway on the example charter, in-process (ASGI) and on a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from charter.gateway.app import build_app
from charter.gateway.factory import Services, build_services
from charter.gateway.keys import hash_key
from charter.settings import resolve

EXAMPLE = "examples/support-desk/charter.yaml"
SUPPORT_KEY = "sk-demo-support-bot"
MARKETING_KEY = "sk-demo-marketing"
ADMIN_KEY = "admin-test-key"


def make_services(tmp_path: Path, charter: str = EXAMPLE) -> Services:
    settings = resolve(
        {
            "charter": charter,
            "database": f"sqlite:///{tmp_path}/charter.db",
            "data_dir": str(tmp_path / "state"),
        },
        environ={},
    )
    return build_services(settings)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    services = make_services(tmp_path)
    yield services
    asyncio.run(services.aclose())


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(services.gateway, admin_key_hash=hash_key(ADMIN_KEY))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://charter") as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn in a thread on 127.0.0.1, stopped at teardown."""

    def __init__(self, services: Services) -> None:
        self.port = free_port()
        app = build_app(services.gateway, admin_key_hash=hash_key(ADMIN_KEY))
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    services = make_services(tmp_path)
    with LiveServer(services) as server:
        yield server
    asyncio.run(services.aclose())
