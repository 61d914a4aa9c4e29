"""kill -9 under load loses no acknowledged audit record, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

import httpx
import pytest

from charter.audit.log import AuditLog, open_keys, stored_leaf_bytes
from charter.audit.spool import Spool
from charter.storage import open_store

EXAMPLE = Path("examples/support-desk/charter.yaml").resolve()
KEY = "sk-demo-support-bot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "charter serve exited; see serve.log"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("charter serve did not start")


def start_serve(
    tmp_path: Path, database: str, state: Path, charter: Path = EXAMPLE
) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    """`charter serve` on ``charter`` as its own process on a free loopback port: the process,
    its base URL and its log file (close it when the process has stopped)."""
    port = free_port()
    env = {**os.environ, "CHARTER_DATABASE": database, "CHARTER_DATA_DIR": str(state)}
    log_file = (tmp_path / "serve.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "charter.cli",
        "serve",
        "--charter",
        str(charter),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    return proc, f"http://127.0.0.1:{port}", log_file


def with_durability(durability: str, tmp_path: Path) -> Path:
    """The example charter, beside the original (it names files next to it), with the audit
    control's ``durability`` set."""
    text = EXAMPLE.read_text()
    marker = "      content: redacted\n"
    assert marker in text, "the example's audit control changed; update this test"
    path = EXAMPLE.parent / f".crash-test-{tmp_path.name}.yaml"
    path.write_text(text.replace(marker, marker + f"      durability: {durability}\n", 1))
    return path


@pytest.mark.parametrize("durability", ["flush", "commit"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_under_load_loses_no_acknowledged_record(
    backend: str, durability: str, tmp_path: Path, postgres_url: str
) -> None:
    database = f"sqlite:///{tmp_path}/c.db" if backend == "sqlite" else postgres_url
    state = tmp_path / "state"
    charter = with_durability(durability, tmp_path)
    proc, base, log_file = start_serve(tmp_path, database, state, charter)
    try:
        wait_ready(base, proc)  # the charter is read at start: the copy can go once it is up
    except BaseException:
        proc.kill()
        proc.wait(10)
        log_file.close()
        raise
    finally:
        charter.unlink()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=5) as client:
            for _ in range(2000):  # bounded; stopped by the kill long before
                if stop.is_set():
                    return
                try:
                    response = client.post(
                        base + "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {KEY}"},
                    )
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(response.headers["x-charter-request-id"])

    try:
        workers = [threading.Thread(target=load) for _ in range(8)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log_file.close()
    for worker in workers:
        worker.join(10)
    assert len(acknowledged) >= 150

    # What the killed process acknowledged is in the log, or in the spool it will replay.
    store = open_store(database)
    store.migrate()
    log = AuditLog(store, open_keys(state), spool=Spool(state / "audit-spool.jsonl"))
    log.close()  # drains any spool
    recorded = {json.loads(b)["request_id"] for b in stored_leaf_bytes(store)}
    store.close()
    missing = set(acknowledged) - recorded
    assert not missing, f"{len(missing)} acknowledged requests have no audit record"


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for the server process (a schema is not enough: the server
    opens its own connections)."""
    import psycopg

    name = f"charter_crash_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    request.addfinalizer(drop)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"
