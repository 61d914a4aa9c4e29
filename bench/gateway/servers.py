"""The processes a gateway benchmark runs on loopback: the mock upstream, Charter, LiteLLM's proxy.

Each server is a separate process, started with the same command a user would type, so the
benchmark measures what ships. Configuration files are written to a scratch directory per run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

BENCH_DIR = Path(__file__).resolve().parent.parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]"

CHARTER_MODEL = "bench-model"
UPSTREAM_MODEL = "mock-model"


class BenchError(Exception):
    """Something the person running the benchmark has to fix; the message says what."""


def free_port() -> int:
    """A port nobody listens on now (the OS picks it; the small race is harmless on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """``cmd`` under ``taskset -c cpus`` when pinning is on."""
    if not cpus:
        return list(cmd)
    return ["taskset", "-c", cpus, *cmd]


@dataclass
class Server:
    """One server process and how to reach it."""

    name: str
    base_url: str  # includes /v1
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 10 seconds."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(
    name: str,
    cmd: Sequence[str],
    base_url: str,
    ready_url: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Server:
    """Start ``cmd``, its output in ``workdir/<name>.log``; wait until ``ready_url`` says 200."""
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir
    )
    server = Server(name, base_url, process, log_path, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"{name} exited during start-up:\n{server.log_tail()}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"{name} did not become ready within {timeout_s:.0f}s:\n{server.log_tail()}")


# --- the mock upstream --------------------------------------------------------------------------


def start_mock(workdir: Path, cpus: str | None, *, shipped: bool = False) -> Server:
    """Charter's mock upstream in its zero-latency fast path (requests carry no X-Mock-* script).

    ``shipped`` runs ``python -m charter.providers.mock_server`` itself; otherwise the same app
    through ``mock_upstream.py``, which turns Nagle's algorithm off (see that module).
    """
    port = free_port()
    if shipped:
        cmd = [sys.executable, "-m", "charter.providers.mock_server", "--port", str(port)]
    else:
        launcher = Path(__file__).with_name("mock_upstream.py")
        cmd = [sys.executable, str(launcher), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    return start("mock", pinned(cmd, cpus), base + "/v1", base + "/health", workdir)


def keepalive_ms(url: str, count: int = 20) -> float:
    """Median time of ``count`` GETs on one keep-alive connection: a 40 ms answer means a
    server left Nagle's algorithm on, which would swamp everything this benchmark measures."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", parts.path)
            conn.getresponse().read()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    return statistics.median(times)


# --- Charter ------------------------------------------------------------------------------------


def charter_executable() -> str:
    """The ``charter`` command of the interpreter running the benchmark (the project's venv)."""
    beside = Path(sys.executable).parent / "charter"
    if beside.exists():
        return str(beside)
    found = shutil.which("charter")
    if found is None:
        raise BenchError(
            "the `charter` command is not installed for this Python; run the benchmark with the "
            "project's interpreter: python3 -m venv .venv && .venv/bin/pip install -e . && "
            ".venv/bin/python bench/gateway/run.py"
        )
    return found


def charter_yaml(
    upstream_base_url: str, key: str, connections: int, durability: str = "flush"
) -> str:
    """A charter with a route, a budget and a rate limit that all run on every request, set so
    that none of them refuses anything during a benchmark, and an audit control that says how
    durable each request's record is before the answer goes out (docs/audit.md)."""
    review_by = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    digest = hashlib.sha256(key.encode()).hexdigest()
    document = {
        "format": 1,
        "organization": "Charter gateway benchmark",
        "decisions": [
            {
                "id": "bench-models",
                "statement": "Benchmark clients use only the benchmark model.",
                "owner": "bench",
                "risk": "low",
                "review_by": review_by,
                "enforced_by": ["bench-route"],
            },
            {
                "id": "bench-spend",
                "statement": "The benchmark team has a monthly budget.",
                "owner": "bench",
                "risk": "low",
                "review_by": review_by,
                "enforced_by": ["bench-budget"],
            },
            {
                "id": "bench-fair-use",
                "statement": "The benchmark app has a request and token rate.",
                "owner": "bench",
                "risk": "low",
                "review_by": review_by,
                "enforced_by": ["bench-rate"],
            },
            {
                "id": "bench-evidence",
                "statement": "Every benchmark request is in the audit trail.",
                "owner": "bench",
                "risk": "low",
                "review_by": review_by,
                "enforced_by": ["bench-audit"],
            },
        ],
        "controls": [
            {
                "id": "bench-route",
                "kind": "route",
                "serves": ["bench-models"],
                "settings": {"rules": [{"principals": ["bench"], "models": [CHARTER_MODEL]}]},
            },
            {
                "id": "bench-budget",
                "kind": "budget",
                "serves": ["bench-spend"],
                "settings": {
                    "limits": [{"principal": "bench", "usd": 1_000_000, "period": "month"}]
                },
            },
            {
                "id": "bench-rate",
                "kind": "rate_limit",
                "serves": ["bench-fair-use"],
                "settings": {
                    "limits": [
                        {
                            "principal": "bench-app",
                            "requests_per_minute": 100_000_000,
                            "tokens_per_minute": 100_000_000_000,
                        }
                    ]
                },
            },
            {
                "id": "bench-audit",
                "kind": "audit",
                "serves": ["bench-evidence"],
                "settings": {"content": "hashed", "durability": durability},
            },
        ],
        "principals": [
            {"id": "bench", "kind": "team"},
            {
                "id": "bench-app",
                "kind": "app",
                "member_of": "bench",
                "keys": [{"id": "bench-key", "sha256": digest}],
            },
        ],
        "providers": [
            {
                "id": "mock",
                "kind": "openai",
                "base_url": upstream_base_url,
                # The default (64) would queue requests inside the gateway at 100 connections;
                # LiteLLM has no such limit, so like-for-like means one slot per connection.
                "max_concurrency": max(64, connections),
                "models": [
                    {
                        "name": CHARTER_MODEL,
                        "upstream": UPSTREAM_MODEL,
                        "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
                        "max_output_tokens": 256,
                    }
                ],
            }
        ],
    }
    # JSON is YAML; writing JSON avoids depending on PyYAML's dumper settings.
    return json.dumps(document, indent=2) + "\n"


def start_charter(
    workdir: Path,
    upstream: Server,
    key: str,
    connections: int,
    cpus: str | None,
    executable: str | None = None,
    *,
    durability: str = "flush",
    name: str = "charter",
) -> Server:
    """``charter serve`` on the embedded default (SQLite in ``workdir``), in-process counters."""
    path = workdir / f"{name}.yaml"
    path.write_text(charter_yaml(upstream.base_url, key, connections, durability))
    port = free_port()
    cmd = [
        executable or charter_executable(),
        "serve",
        "--charter",
        str(path),
        "--database",
        f"sqlite:///{workdir / (name + '.db')}",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHARTER_DATA_DIR": str(workdir / f"{name}-state")}
    return start(name, pinned(cmd, cpus), base + "/v1", base + "/healthz", workdir, env=env)


NGINX_INSTALL = "apt-get install nginx-light (Debian) or your system's nginx package"


def nginx_conf(upstream_base_url: str, port: int, workdir: Path) -> str:
    """One nginx process relaying to the mock over a keep-alive pool: a proxy hop written in C."""
    parts = urlsplit(upstream_base_url)
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir / "nginx-body"};
    proxy_temp_path {workdir / "nginx-proxy"};
    fastcgi_temp_path {workdir / "nginx-fastcgi"};
    uwsgi_temp_path {workdir / "nginx-uwsgi"};
    scgi_temp_path {workdir / "nginx-scgi"};
    upstream mock {{ server {parts.hostname}:{parts.port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, upstream: Server, cpus: str | None) -> Server:
    """nginx as a reverse proxy to the mock: what any proxy hop costs on this machine."""
    executable = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if executable is None:
        raise BenchError(f"the nginx target needs nginx; install it with: {NGINX_INSTALL}")
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(upstream.base_url, port, workdir))
    cmd = [executable, "-c", str(conf), "-p", str(workdir)]
    base = f"http://127.0.0.1:{port}"
    return start("nginx", pinned(cmd, cpus), base + "/v1", base + "/health", workdir)


def start_floor(workdir: Path, upstream: Server, cpus: str | None) -> Server:
    """The pass-through proxy of ``floor_proxy.py``: what the stack costs before any control."""
    port = free_port()
    launcher = Path(__file__).with_name("floor_proxy.py")
    cmd = [sys.executable, str(launcher), "--upstream", upstream.base_url, "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    return start("floor", pinned(cmd, cpus), base + "/v1", base + "/healthz", workdir)


# --- LiteLLM ------------------------------------------------------------------------------------


def ensure_litellm(spec: str = LITELLM_SPEC, *, quiet: bool = False) -> Path:
    """LiteLLM's proxy in its own virtual environment (never a project dependency)."""
    executable = LITELLM_VENV / "bin" / "litellm"
    if executable.exists():
        return executable
    if not quiet:
        print(f"installing {spec} into {LITELLM_VENV} (once; about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", spec]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0 or not executable.exists():
        raise BenchError(
            f"could not install {spec} into {LITELLM_VENV}:\n{result.stderr[-2000:]}\n"
            f"try by hand: {' '.join(pip)}"
        )
    return executable


def litellm_version() -> str:
    python = LITELLM_VENV / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or "unknown"


def litellm_yaml(upstream_base_url: str, master_key: str) -> str:
    """The same model mapped to the mock; a master key; no database (so no spend logs)."""
    document = {
        "model_list": [
            {
                "model_name": CHARTER_MODEL,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": upstream_base_url,
                    "api_key": "sk-mock-upstream",
                },
            }
        ],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"telemetry": False},
    }
    return json.dumps(document, indent=2) + "\n"


def start_litellm(workdir: Path, upstream: Server, master_key: str, cpus: str | None) -> Server:
    """``litellm --config ... --num_workers 1``, offline (the bundled cost map, no telemetry)."""
    executable = ensure_litellm()
    path = workdir / "litellm.yaml"
    path.write_text(litellm_yaml(upstream.base_url, master_key))
    port = free_port()
    cmd = [
        str(executable),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = {
        **os.environ,
        # Without this LiteLLM fetches its price map from the internet at start-up.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
    }
    env.pop("DATABASE_URL", None)  # like-for-like: no database behind either gateway
    base = f"http://127.0.0.1:{port}"
    return start(
        "litellm",
        pinned(cmd, cpus),
        base + "/v1",
        base + "/health/liveliness",
        workdir,
        env=env,
        timeout_s=180.0,
    )
