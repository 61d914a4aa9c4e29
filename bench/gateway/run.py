"""The gateway benchmark: the mock upstream alone, through Charter, and through LiteLLM's proxy.

Everything runs on loopback, each server in its own process, driven by wrk with the same load::

    .venv/bin/python bench/gateway/run.py            # full: 3 rounds, streamed and not
    .venv/bin/python bench/gateway/run.py --quick    # one short round, non-streamed only
    .venv/bin/python bench/gateway/run.py --soak 600 # Charter's RSS under 10 minutes of load

Results go to bench/results/gateway-<timestamp>.json; a Markdown table is printed for the README.
See bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from load import Load, LoadResult, chat_body, require_wrk, run_wrk
from procstat import RSS_FIELDS, cpu_seconds, load_average, rss_parts
from pyspy import require_py_spy, shares
from report import markdown_table, soak_summary, summarize
from servers import (
    CHARTER_MODEL,
    UPSTREAM_MODEL,
    BenchError,
    Server,
    ensure_litellm,
    keepalive_ms,
    litellm_version,
    start_charter,
    start_floor,
    start_litellm,
    start_mock,
    start_nginx,
)

RESULTS = Path(__file__).resolve().parent.parent / "results"
TARGETS = ("direct", "nginx", "floor", "charter", "charter-commit", "litellm")
DEFAULT_TARGETS = ("direct", "floor", "charter", "charter-commit", "litellm")
"""direct: the mock upstream alone; nginx: nginx relaying to it (one process, a keep-alive
pool; not in the default set, it needs nginx installed), what a proxy hop written in C costs here;
floor: a pass-through proxy on Charter's stack (uvicorn, Starlette, aiohttp) that does nothing else;
charter: `charter serve` with audit durability `flush` (the default); charter-commit: the same with
`durability: commit`; litellm: its proxy."""


@dataclass(frozen=True)
class Target:
    """Something wrk can load: its URL, model name, key, and the process whose CPU it costs."""

    name: str
    server: Server
    model: str
    key: str | None

    @property
    def url(self) -> str:
        return self.server.base_url + "/chat/completions"


@dataclass(frozen=True)
class Pinning:
    """Which CPUs each side may use (taskset lists), or None for the scheduler's choice."""

    gateway: str | None
    load: str | None  # the mock upstream and wrk share these

    @staticmethod
    def choose(mode: str) -> Pinning:
        cpus = os.cpu_count() or 1
        if mode == "off" or (mode == "auto" and cpus < 2) or shutil.which("taskset") is None:
            return Pinning(None, None)
        # The gateway under test gets CPU 0; the mock upstream and wrk share the others, so in
        # every run the upstream and the load generator have the same room.
        rest = "1" if cpus == 2 else f"1-{cpus - 1}"
        return Pinning("0", rest)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Charter's gateway against the mock upstream and LiteLLM's proxy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one short round, non-streamed only")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="soak Charter instead")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections")
    parser.add_argument("--duration", type=float, help="seconds per measured run (20; quick 5)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of unmeasured load before each run (3; quick 2)"
    )
    parser.add_argument("--rounds", type=int, help="rounds over every target (3; quick 1)")
    parser.add_argument("--prompt-bytes", type=int, default=1024, help="size of the user message")
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="total requests/s of the paced runs (below every target's capacity); 0 skips them",
    )
    parser.add_argument(
        "--stream",
        choices=("auto", "yes", "no"),
        default="auto",
        help="streamed runs too (auto: yes, except with --quick)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"a comma-separated list from: {', '.join(TARGETS)}",
    )
    parser.add_argument(
        "--pin",
        choices=("auto", "on", "off"),
        default="off",
        help="taskset: the gateway on CPU 0, the mock and wrk on the rest (auto: on if 2+ CPUs); "
        "off by default because on a shared machine a pinned gateway cannot escape other load",
    )
    parser.add_argument(
        "--mock-shipped",
        action="store_true",
        help="run `python -m charter.providers.mock_server` as shipped (see mock_upstream.py)",
    )
    parser.add_argument(
        "--charter-bin",
        help="another `charter` executable to benchmark (e.g. a venv with uvloop and httptools)",
    )
    parser.add_argument("--sample", type=float, default=5.0, help="soak: seconds between samples")
    parser.add_argument(
        "--soak-rate", type=float, default=0.0, help="soak: total requests/s (0: closed loop)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile Charter with py-spy under the closed-loop load instead of benchmarking",
    )
    parser.add_argument("--py-spy", help="the py-spy executable (default: on PATH)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where result files go")
    args = parser.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 3.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    return args


def loads_for(args: argparse.Namespace) -> list[Load]:
    streams = [False]
    if args.stream == "yes" or (args.stream == "auto" and not args.quick):
        streams.append(True)
    out = []
    for stream in streams:
        out.append(Load(args.connections, args.duration, args.prompt_bytes, stream, None))
        if args.rate:
            out.append(Load(args.connections, args.duration, args.prompt_bytes, stream, args.rate))
    return out


def check_answer(target: Target, stream: bool) -> None:
    """One request by hand: a 200 with a completion in it, so wrk's 2xx count means success."""
    headers = {"content-type": "application/json"}
    if target.key:
        headers["authorization"] = f"Bearer {target.key}"
    body = chat_body(target.model, 64, stream=stream)
    response = httpx.post(target.url, content=body, headers=headers, timeout=30)
    ok = response.status_code == 200 and (
        "[DONE]" in response.text if stream else bool(response.json().get("choices"))
    )
    if not ok:
        raise BenchError(
            f"{target.name} answered {response.status_code} to a test request:\n"
            f"{response.text[:1000]}"
        )


def measure(
    target: Target, load: Load, workdir: Path, pin: Pinning, duration: float | None = None
) -> dict[str, Any]:
    """One wrk run, with the CPU time the serving process spent during it."""
    loadavg = load_average()
    cpu_before = cpu_seconds(target.server.pid)
    result: LoadResult = run_wrk(
        target.url, target.model, target.key, load, workdir, pin.load, duration_s=duration
    )
    cpu = cpu_seconds(target.server.pid) - cpu_before
    if not target.server.alive():
        raise BenchError(f"{target.name} died during the run:\n{target.server.log_tail()}")
    row: dict[str, Any] = result.as_dict()
    row["cpu_s"] = round(cpu, 3)
    row["cpu_ms_per_request"] = round(cpu * 1000 / result.requests, 4) if result.requests else None
    row["loadavg_1m"] = round(loadavg, 2)
    row["offered_rate"] = load.rate
    return row


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def servers(
    args: argparse.Namespace, workdir: Path, pin: Pinning, wanted: list[str]
) -> Iterator[dict[str, Target]]:
    """Start the mock and the gateways asked for; stop them all however the run ends."""
    with ExitStack() as stack:
        progress("starting the mock upstream")
        mock = start_mock(workdir, pin.load, shipped=args.mock_shipped)
        stack.callback(mock.stop)
        stall = keepalive_ms(mock.base_url.removesuffix("/v1") + "/health")
        if stall > 20:
            raise BenchError(
                f"the mock upstream takes {stall:.0f} ms per keep-alive request: Nagle's algorithm "
                "is on (see bench/gateway/mock_upstream.py); run without --mock-shipped"
            )
        targets = {"direct": Target("direct", mock, UPSTREAM_MODEL, None)}
        if "floor" in wanted:
            progress("starting the pass-through floor proxy")
            floor = start_floor(workdir, mock, pin.gateway)
            stack.callback(floor.stop)
            targets["floor"] = Target("floor", floor, UPSTREAM_MODEL, None)
        if "nginx" in wanted:
            progress("starting nginx as a reverse proxy")
            nginx = start_nginx(workdir, mock, pin.gateway)
            stack.callback(nginx.stop)
            targets["nginx"] = Target("nginx", nginx, UPSTREAM_MODEL, None)
        for name, durability in (("charter", "flush"), ("charter-commit", "commit")):
            if name not in wanted:
                continue
            progress(f"starting charter serve ({name}: audit durability {durability})")
            key = "sk-bench-" + secrets.token_hex(16)
            charter = start_charter(
                workdir,
                mock,
                key,
                args.connections,
                pin.gateway,
                args.charter_bin,
                durability=durability,
                name=name,
            )
            stack.callback(charter.stop)
            targets[name] = Target(name, charter, CHARTER_MODEL, key)
        if "litellm" in wanted:
            ensure_litellm()
            progress("starting LiteLLM's proxy (slow to start)")
            master = "sk-bench-master-" + secrets.token_hex(16)
            litellm = start_litellm(workdir, mock, master, pin.gateway)
            stack.callback(litellm.stop)
            targets["litellm"] = Target("litellm", litellm, CHARTER_MODEL, master)
        yield {name: targets[name] for name in wanted}


def environment(pin: Pinning, wanted: list[str]) -> dict[str, Any]:
    wrk = subprocess.run([require_wrk(), "-v"], capture_output=True, text=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
    )
    return {
        "git_commit": commit.stdout.strip() or None,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else None,
        "litellm": litellm_version() if "litellm" in wanted else None,
        "pinning": {"gateway": pin.gateway, "mock_and_wrk": pin.load},
    }


def benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pin = Pinning.choose(args.pin)
    wanted = list(dict.fromkeys(["direct", *args.targets]))
    loads = loads_for(args)
    runs: list[dict[str, Any]] = []
    with servers(args, workdir, pin, wanted) as targets:
        for target in targets.values():
            for stream in sorted({load.stream for load in loads}):
                check_answer(target, stream)
        for load in loads:
            for round_no in range(args.rounds):
                # Rotate the order each round so no target always runs first (or last).
                order = list(targets.values())
                order = order[round_no % len(order) :] + order[: round_no % len(order)]
                for target in order:
                    if args.warmup:
                        # Right before each measured run: httpx closes connections idle for 5 s,
                        # and a gateway reopening 100 of them is not its steady state.
                        measure(target, load, workdir, pin, duration=args.warmup)
                    row = measure(target, load, workdir, pin)
                    progress(
                        f"round {round_no + 1}/{args.rounds} {load.label:<24} {target.name:<8} "
                        f"{row['rps']:>8.1f} req/s  p50 {row['p50_ms']:.2f} ms  "
                        f"p99 {row['p99_ms']:.2f} ms  errors {row['errors']}  "
                        f"cpu {row['cpu_ms_per_request']} ms/req"
                    )
                    runs.append(
                        {"round": round_no, "load": load.label, "target": target.name, **row}
                    )
        env = environment(pin, wanted)
    return {
        "kind": "gateway",
        "settings": {
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "prompt_bytes": args.prompt_bytes,
            "paced_rate": args.rate or None,
            "loads": [load.label for load in loads],
            "mock": "shipped" if args.mock_shipped else "bench/gateway/mock_upstream.py",
            "charter_bin": args.charter_bin,
        },
        "environment": env,
        "runs": runs,
        "summary": summarize(runs),
    }


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Load Charter for ``args.soak`` seconds and sample its RSS every ``args.sample`` seconds."""
    pin = Pinning.choose(args.pin)
    load = Load(args.connections, args.soak, args.prompt_bytes, False, args.soak_rate or None)
    samples: list[tuple[float, dict[str, int]]] = []
    with servers(args, workdir, pin, ["charter"]) as targets:
        charter = targets["charter"]
        check_answer(charter, False)
        warm = max(args.warmup, 10.0)
        progress(f"soak: {warm:.0f}s warm-up, then {args.soak:.0f}s of {load.label}")
        measure(charter, load, workdir, pin, duration=warm)
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss_parts(charter.server.pid)))
                stop.wait(args.sample)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            row = measure(charter, load, workdir, pin)
        finally:
            stop.set()
            sampler.join()
        samples.append((time.monotonic() - started, rss_parts(charter.server.pid)))
        db = workdir / "charter.db"
        db_bytes = sum(p.stat().st_size for p in workdir.glob("charter.db*")) if db.exists() else 0
        env = environment(pin, ["charter"])
    return {
        "kind": "gateway-soak",
        "settings": {"seconds": args.soak, "sample_s": args.sample, "load": load.label},
        "environment": env,
        "load": row,
        "rss_samples": [{"t_s": round(t, 1), **parts} for t, parts in samples],
        "sqlite_bytes": db_bytes,
        "summary": {
            part: soak_summary([(t, parts[part]) for t, parts in samples]) for part in RSS_FIELDS
        },
    }


def profile(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """py-spy on ``charter serve`` during one closed-loop run: CPU shares by part of the path."""
    spy = require_py_spy(args.py_spy)
    pin = Pinning.choose(args.pin)
    load = Load(args.connections, args.duration, args.prompt_bytes, args.stream == "yes", None)
    raw = workdir / "py-spy.txt"
    with servers(args, workdir, pin, ["charter"]) as targets:
        charter = targets["charter"]
        check_answer(charter, load.stream)
        measure(charter, load, workdir, pin, duration=max(args.warmup, 2.0))
        progress(f"profiling charter for {args.duration:g}s under {load.label}")
        cmd = [
            spy,
            "record",
            "--pid",
            str(charter.server.pid),
            "--duration",
            str(round(args.duration)),
        ]
        cmd += ["--rate", "250", "--gil", "--nonblocking", "--format", "raw", "--output", str(raw)]
        recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        row = measure(charter, load, workdir, pin)
        _, err = recorder.communicate(timeout=60)
        if recorder.returncode != 0 or not raw.exists():
            raise BenchError(f"py-spy failed: {err.decode(errors='replace')[-1000:]}")
        stacks = raw.read_text()
        env = environment(pin, ["charter"])
    return {
        "kind": "gateway-profile",
        "settings": {"load": load.label, "connections": args.connections},
        "environment": env,
        "load": row,
        "shares_percent": dict(shares(stacks.splitlines())),
        "py_spy_raw": stacks,
    }


def write(result: dict[str, Any], out: Path, prefix: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        require_wrk()
        with tempfile.TemporaryDirectory(prefix="charter-bench-") as scratch:
            run: Callable[[argparse.Namespace, Path], dict[str, Any]]
            if args.profile:
                run, prefix = profile, "gateway-profile"
            elif args.soak:
                run, prefix = soak, "gateway-soak"
            else:
                run, prefix = benchmark, "gateway"
            result = run(args, Path(scratch))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write(result, args.out, prefix)
    print(markdown_table(result))
    print(f"\nfull results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
