"""The load: one request body for every target, sent by ``wrk`` with a generated Lua script.

wrk records each request's latency in microseconds and keeps the whole distribution, so the
percentiles it reports are exact for the requests it sent. Two shapes of load:

* closed loop ("saturation"): every connection sends its next request as soon as the last one
  is answered, which finds the most a target can serve; latency then mostly measures queueing.
* paced: each connection waits a random time (mean chosen for a fixed total rate) before each
  request, so the target is not saturated and latency measures the time spent per request. wrk
  starts its clock when the request is written, after the wait.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from servers import BenchError, pinned

WRK_INSTALL = "apt-get install -y wrk"
PERCENTILES = (50, 90, 95, 99, 99.9)
_MARK = "WRKJSON "


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError(f"wrk is not installed; install it with: {WRK_INSTALL}")
    return found


def prompt_text(size: int) -> str:
    """``size`` bytes of plain English-like text (the mock counts about 4 characters a token)."""
    words = (
        "the customer asked about the delivery date of order number four eight two one and "
        "whether the boots can be returned after thirty days if they were worn once outside "
    )
    return (words * (size // len(words) + 1))[:size]


def chat_body(model: str, prompt_bytes: int, *, stream: bool) -> str:
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are the support assistant of an outdoor shop."},
            {"role": "user", "content": prompt_text(prompt_bytes)},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


def lua_script(body: str, api_key: str | None, mean_delay_ms: float) -> str:
    """A wrk script: POST ``body`` with the key; pace with ``delay()`` when ``mean_delay_ms`` > 0;
    print a JSON summary at the end (wrk's text output rounds to 10 microseconds)."""
    if "]==]" in body:
        raise BenchError("the request body cannot be embedded in the wrk script")
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f"wrk.body = [==[{body}]==]",
    ]
    if api_key:
        lines.append(f'wrk.headers["Authorization"] = [==[Bearer {api_key}]==]')
    if mean_delay_ms > 0:
        # Uniform in [0, 2*mean]: the same mean rate, without every connection in lockstep.
        lines += [
            "local threads = 0",
            'function setup(thread) threads = threads + 1; thread:set("seed", threads) end',
            "function init(args) math.randomseed(os.time() * 1000 + seed) end",
            f"function delay() return math.random(0, {round(2 * mean_delay_ms)}) end",
        ]
    fields = ", ".join(f'"{p}": %d' for p in PERCENTILES)
    calls = ", ".join(f"latency:percentile({p})" for p in PERCENTILES)
    lines += [
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        "  io.write(string.format('" + _MARK + '{"duration_us": %d, "requests": %d, '
        '"bytes": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
        '"mean_us": %.1f, "stdev_us": %.1f, "max_us": %d, "percentiles_us": {' + fields + "}}\\n',",
        "    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,",
        f"    e.status, e.timeout, latency.mean, latency.stdev, latency.max, {calls}))",
        "end",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured for one run against one target."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # socket errors (connect, read, write, timeout) plus non-2xx/3xx answers
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def parse(stdout: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            break
    else:
        raise BenchError(f"wrk printed no summary:\n{stdout[-2000:]}")
    pct = {float(k): v / 1000 for k, v in raw["percentiles_us"].items()}
    duration = raw["duration_us"] / 1e6
    sockets = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return LoadResult(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration else 0.0,
        p50_ms=pct[50],
        p90_ms=pct[90],
        p95_ms=pct[95],
        p99_ms=pct[99],
        p999_ms=pct[99.9],
        mean_ms=round(raw["mean_us"] / 1000, 3),
        max_ms=raw["max_us"] / 1000,
        errors=sockets + raw["status"],
        non_2xx=raw["status"],
        socket_errors=sockets,
    )


@dataclass(frozen=True)
class Load:
    """One shape of load, the same for every target."""

    connections: int
    duration_s: float
    prompt_bytes: int
    stream: bool
    rate: float | None  # total requests/s when paced; None is closed loop
    threads: int = 1
    timeout_s: int = 10

    @property
    def mean_delay_ms(self) -> float:
        if not self.rate:
            return 0.0
        return self.connections / self.rate * 1000

    @property
    def label(self) -> str:
        kind = "stream" if self.stream else "json"
        pace = f"paced {self.rate:g} req/s" if self.rate else "saturation"
        return f"{kind}, {pace}"


def run_wrk(
    url: str,
    model: str,
    api_key: str | None,
    load: Load,
    workdir: Path,
    cpus: str | None,
    *,
    duration_s: float | None = None,
) -> LoadResult:
    """Run wrk against ``url`` (the /chat/completions URL) and return what it measured."""
    body = chat_body(model, load.prompt_bytes, stream=load.stream)
    script = workdir / "load.lua"
    script.write_text(lua_script(body, api_key, load.mean_delay_ms))
    seconds = duration_s if duration_s is not None else load.duration_s
    cmd = [
        require_wrk(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={load.timeout_s}s",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return parse(result.stdout)
