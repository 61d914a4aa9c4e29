"""Charter's request path in-process: the ASGI app driven directly, one request at a time.

No HTTP server, no load generator: the app is called with an ASGI scope, so what is measured is
Charter's own work (and its upstream call to the mock, which runs as a subprocess on loopback).
CPU time is the process's (the event loop and Charter's writer threads); ``--profile`` prints
cProfile's top functions and the Python calls per request; ``--raw`` calls the chat endpoint
without Starlette's router and middleware, to see what they cost::

    python bench/gateway/inprocess.py --requests 3000
    python bench/gateway/inprocess.py --requests 3000 --raw
    python bench/gateway/inprocess.py --requests 2000 --profile --sort cumtime
    python bench/gateway/inprocess.py --requests 1000 --stream --max-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from servers import charter_yaml, free_port

from charter.gateway.app import build_app
from charter.gateway.factory import build_services
from charter.settings import resolve

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
KEY = "sk-bench-inprocess-0123456789abcdef"


def raw_chat(app: Any) -> ASGIApp:
    """The chat completions endpoint called straight, without the router and middleware."""
    from starlette.requests import Request

    route = next(r for r in app.routes if getattr(r, "path", "") == "/v1/chat/completions")
    endpoint = route.endpoint

    async def call(
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return call


async def drive(args: argparse.Namespace, upstream: str, workdir: Path) -> None:
    charter = workdir / "charter.yaml"
    charter.write_text(charter_yaml(upstream, KEY, 100, args.durability))
    settings = resolve(
        {
            "charter": str(charter),
            "database": f"sqlite:///{workdir}/charter.db",
            "data_dir": str(workdir / "state"),
        }
    )
    services = build_services(settings)
    app: Any = build_app(services.gateway)
    if args.raw:
        app = raw_chat(app)
    body = json.dumps(
        {
            "model": "bench-model",
            "messages": [{"role": "user", "content": "x" * args.prompt_bytes}],
            "max_tokens": args.max_tokens,
            "stream": args.stream,
        }
    ).encode()
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]
    path = "/v1/chat/completions"

    async def one() -> None:
        scope: Message = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "state": {},
        }
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0].get("status") != 200:
            raise SystemExit(f"the gateway answered {sent[0]}: {sent[1:]}")

    for _ in range(args.warmup):
        await one()
    profile = cProfile.Profile() if args.profile else None
    times = []
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    for _ in range(args.requests):
        start = time.perf_counter()
        await one()
        times.append(time.perf_counter() - start)
        await asyncio.sleep(0)  # let what runs after the answer (metrics) run, as in a server
    if profile is not None:
        profile.disable()
    cpu_ms = 1000 * (time.process_time() - cpu) / args.requests
    await services.aclose()
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(f"Python calls per request: {stats.total_calls / args.requests:.0f}")
    times.sort()
    p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
    print(
        f"{args.requests} {'streamed ' if args.stream else ''}requests "
        f"({'raw endpoint' if args.raw else 'Starlette app'}, "
        f"durability {args.durability}): CPU {cpu_ms:.3f} ms/request, p50 {1000 * p50:.3f} ms, "
        f"p90 {1000 * p90:.3f} ms, mean {1000 * statistics.mean(times):.3f} ms"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--prompt-bytes", type=int, default=1024)
    parser.add_argument("--durability", choices=("flush", "commit"), default="commit")
    parser.add_argument("--stream", action="store_true", help="streamed answers (SSE)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per answer")
    parser.add_argument("--raw", action="store_true", help="skip Starlette's router and middleware")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured requests")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumtime...)")
    parser.add_argument("--top", type=int, default=40, help="how many profiled functions to show")
    args = parser.parse_args(argv)
    port = free_port()
    mock = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("mock_upstream.py")), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert mock.stdout is not None
        mock.stdout.readline()  # "mock upstream listening on ..."
        with tempfile.TemporaryDirectory() as workdir:
            os.environ.setdefault("CHARTER_LOG_LEVEL", "warning")
            asyncio.run(drive(args, f"http://127.0.0.1:{port}/v1", Path(workdir)))
    finally:
        mock.terminate()
        mock.wait(10)
        if mock.stdout is not None:
            mock.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
