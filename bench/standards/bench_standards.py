"""Benchmark of standards on the request path: compose, the banned-phrasing check at the output
stage, and the whole-answer check, with the support-desk example's standards.

    .venv/bin/python bench/standards/bench_standards.py [--repeat 20000]

Times are wall time per call on one core after a warm-up (p50 and p99 over ``--repeat`` calls),
for a 1 KB answer that mentions a refund (so the disclosure's condition holds) and one that
mentions nothing the standards look for.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from charter.document.loader import load_charter
from charter.document.model import StandardControl
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Stage
from charter.providers.types import ChatRequest, Message
from charter.standards import Standards, finish_answer, with_instructions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/support-desk/charter.yaml"
CHAIN = ("support-bot", "support")
PLAIN = (
    "Thanks for your message about order 4821. I've looked at it and the parcel left our "
    "warehouse on Monday; it usually arrives within three to five working days. " * 7
)[:1024]
REFUND = PLAIN[:1000] + " Your refund is on its way."


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    for _ in range(min(repeat, 500)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20000)
    repeat = parser.parse_args().repeat
    charter = load_charter(EXAMPLE).require()
    only = [c for c in charter.controls if isinstance(c, StandardControl)]
    charter = charter.model_copy(update={"controls": only})
    standards = Standards(charter, EXAMPLE.parent)
    engine = Engine(charter)
    request = ChatRequest(
        model="sim-small",
        messages=(
            Message(role="system", content="Be brief."),
            Message(role="user", content="Where is my refund?"),
        ),
    )

    def compose() -> object:
        composed = standards.compose(CHAIN, "sim-small", request.system_prompt)
        return with_instructions(request, composed)

    rows = [("compose + with_instructions", compose)]
    for name, text in (("plain", PLAIN), ("refund", REFUND)):
        ctx = RequestContext(Stage.OUTPUT, principals=CHAIN, model="sim-small", text=text)
        rows.append((f"engine.evaluate(OUTPUT), 1 KB {name}", lambda c=ctx: engine.evaluate(c)))
        rows.append(
            (
                f"finish_answer, 1 KB {name}",
                lambda t=text: finish_answer(t, standards, CHAIN, "sim-small", "", []),
            )
        )
    print("| step | p50 us | p99 us |\n|---|---|---|")
    for name, fn in rows:
        p50, p99 = timed(fn, repeat)
        print(f"| {name} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
