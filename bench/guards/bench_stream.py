"""CPU cost of guarding a streamed answer: the example charter's output guards, chunk by chunk.

For answers of 1, 4 and 16 KB fed in 16-character chunks (about four tokens each), reports the CPU
time of the stream guard, the same with every step rescanning the whole answer so far (how streams
were guarded before scanners declared their reach), and one scan of the whole answer for scale.
Medians of ``--repeat`` runs, measured side by side::

    python bench/guards/bench_stream.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from charter.document.loader import load_charter
from charter.gateway.guarding import Guarding, StreamGuard, split_extension
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Stage
from charter.providers.types import ChatRequest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-desk" / "charter.yaml"
SENTENCE = "Our tents are made for three seasons and pack down small enough for a day hike. "


def run(make: Callable[[], StreamGuard], answer: str, chunk: int) -> float:
    guard = make()
    start = time.process_time()
    out = "".join(guard.feed(answer[i : i + chunk]) for i in range(0, len(answer), chunk))
    out += guard.finish()
    spent = time.process_time() - start
    if out != answer or guard.blocked is not None:
        raise SystemExit("the benchmark answer was changed or blocked; pick clean text")
    return spent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--charter", type=Path, default=EXAMPLE)
    parser.add_argument("--sizes", default="1000,4000,16000", help="answer lengths, characters")
    parser.add_argument("--chunk", type=int, default=16, help="characters per streamed chunk")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    engine = Engine(load_charter(args.charter).require())
    guarding = Guarding(engine)
    request = ChatRequest.from_openai(
        {
            "model": "sim-small",
            "messages": [
                {"role": "system", "content": "You are the Northwind support assistant."},
                {"role": "user", "content": "Tell me about tents."},
            ],
        }
    )
    request, ext = split_extension(request)
    principal = engine.charter.principals[-1].id
    ctx = RequestContext(
        Stage.REQUEST, request_id="bench", principals=engine.principals_of(principal)
    )

    def windowed() -> StreamGuard:
        return guarding.stream_guard(guarding.inbound(request, ext, ctx, []), ctx, [])

    def rescanning() -> StreamGuard:
        guard = windowed()
        check = guard.check
        assert check is not None
        guard.check = lambda text, scan_from: check(text, 0)  # every step sees everything
        return guard

    print(f"charter {args.charter}, {args.chunk}-character chunks, median of {args.repeat} runs")
    print(
        "| answer | stream guard, CPU ms | rescanning the whole answer each step | ratio | "
        "one whole-answer scan |"
    )
    print("|--:|--:|--:|--:|--:|")
    for size in (int(s) for s in args.sizes.split(",")):
        answer = (SENTENCE * (size // len(SENTENCE) + 1))[:size]
        now = statistics.median(run(windowed, answer, args.chunk) for _ in range(args.repeat))
        before = statistics.median(run(rescanning, answer, args.chunk) for _ in range(args.repeat))
        inbound = guarding.inbound(request, ext, ctx, [])
        whole = []
        for _ in range(args.repeat):
            start = time.process_time()
            guarding.evaluate_output(answer, inbound, ctx)
            whole.append(time.process_time() - start)
        print(
            f"| {size:,} | {1000 * now:.1f} | {1000 * before:.1f} | {before / now:.1f}x "
            f"| {1000 * statistics.median(whole):.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
