"""PostgreSQL goes away under load: records are spooled, then drained in order when it returns.

The outage is made by a TCP proxy on loopback in front of the real PostgreSQL: cutting the proxy
is, for the gateway, exactly a database that stopped answering.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import httpx

from charter.audit.log import stored_checkpoints, stored_leaf_bytes
from charter.audit.verify import verify_log
from charter.storage import open_store
from tests.audit.test_crash import KEY, postgres_url, start_serve, wait_ready

__all__ = ["postgres_url"]  # the fixture, re-used


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; ``cut()`` drops every connection and refuses new
    ones until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            if not self.up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # pooled connections sit idle between requests
            client.settimeout(None)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.sockets = []

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed.set()
        self.cut()
        self.listener.close()


def test_postgres_outage_spools_and_drains_in_order(tmp_path: Path, postgres_url: str) -> None:
    proxy = CuttableProxy(("127.0.0.1", 5432))
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    state = tmp_path / "state"
    proc, base, log_file = start_serve(tmp_path, proxied, state)
    acknowledged: list[str] = []
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    try:
        wait_ready(base, proc)
        with httpx.Client(timeout=10) as client:

            def burst(n: int) -> None:
                for _ in range(n):
                    response = client.post(
                        base + "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {KEY}"},
                    )
                    assert response.status_code == 200, response.text
                    acknowledged.append(response.headers["x-charter-request-id"])

            burst(20)
            proxy.cut()
            burst(30)  # PostgreSQL is unreachable: answered, records spooled
            assert (state / "audit-spool.jsonl").exists()
            proxy.restore()
            burst(20)  # the spool drains first, then these
            deadline = time.monotonic() + 20
            while (state / "audit-spool.jsonl").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not (state / "audit-spool.jsonl").exists(), "the spool did not drain"
    finally:
        proc.terminate()
        proc.wait(15)
        log_file.close()
        proxy.close()

    store = open_store(postgres_url)
    leaves = stored_leaf_bytes(store)
    records = [json.loads(b) for b in leaves]
    checkpoints = stored_checkpoints(store)
    store.close()
    assert [r["request_id"] for r in records] == acknowledged  # all of them, in order
    # Everything answered during the outage was spooled, plus the first few after it while the
    # writer waited out its retry period; all of it landed as one run, in order.
    spooled = [i for i, r in enumerate(records) if "spool_id" in r["details"]]
    assert spooled[0] == 20 and spooled == list(range(20, spooled[-1] + 1))
    assert spooled[-1] >= 49
    from charter.audit.log import open_keys

    assert verify_log(leaves, checkpoints, open_keys(state).signing.public_key).ok
