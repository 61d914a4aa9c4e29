"""Benchmark of the guards as the example charter runs them: latency per scanner and for the
default input set, and quality per scanner on the held-out splits their own benches use.

Usage::

    .venv/bin/python bench/guards/bench_default_set.py [--repeat 300] [--latency-only]

Latency is wall time (p50, p99) on one thread after a warm-up, on support-desk prose of 100 B,
1 KB and 10 KB with no hits (the common case). "Default set" is ``Engine.evaluate`` at the input
stage of ``examples/support-desk/charter.yaml`` with its enforced input guards (injection, PII,
secrets) and nothing else; "+ topic (shadow)" adds the advice-topics guard as the example runs
it. Quality: injection on the test split of ``training/injection_data.py``, PII on the Presidio
synthetic set, topic on the held-out slices of ``training/topic/measure.py`` (which prints them
one by one). The tables are Markdown, for the README.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "training"), str(ROOT / "training" / "topic")]

import bench_pii
import injection_data
import measure

from charter.document.loader import load_charter
from charter.document.model import Charter, Mode
from charter.guards.injection import InjectionScanner
from charter.guards.pii import PIIScanner
from charter.guards.secrets import SecretsScanner
from charter.guards.topic import TopicScanner
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Stage

EXAMPLE = ROOT / "examples" / "support-desk" / "charter.yaml"
SIZES = (100, 1_000, 10_000)
EXAMPLE_PII = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"]


def percentiles(fn: Callable[[str], object], texts: Sequence[str]) -> tuple[float, float]:
    """p50 and p99 in ms of ``fn`` over ``texts`` (each a different slice), after a warm-up."""
    for text in texts[:20]:
        fn(text)
    samples = []
    for text in texts[20:]:
        start = time.perf_counter()
        fn(text)
        samples.append(time.perf_counter() - start)
    p50, p99 = np.percentile(samples, [50, 99]) * 1e3
    return float(p50), float(p99)


def texts_of(size: int, repeat: int) -> list[str]:
    """``repeat + 20`` different slices of support-desk prose, ``size`` characters each."""
    prose = bench_pii.make_text(size + 2_000, with_pii=False)
    offsets = np.random.default_rng(size).integers(0, 2_000, repeat + 20)
    return [prose[o : o + size] for o in offsets]


def with_modes(charter: Charter, keep: set[str]) -> Charter:
    """The charter with every control outside ``keep`` switched off."""
    controls = [
        c if c.id in keep else c.model_copy(update={"mode": Mode.OFF}) for c in charter.controls
    ]
    return charter.model_copy(update={"controls": controls})


def latency(repeat: int) -> None:
    charter = load_charter(EXAMPLE).require()
    topics = next(c for c in charter.controls if c.id == "advice-topics").settings.topics
    scanners: list[tuple[str, Callable[[str], object]]] = [
        ("injection (direct)", InjectionScanner("direct").scan),
        ("pii (example entities)", PIIScanner(EXAMPLE_PII).scan),
        ("secrets", SecretsScanner().scan),
        ("topic (example topics)", TopicScanner(topics).scan),
    ]
    default = Engine(with_modes(charter, {"input-injection", "pii-redaction", "secrets-guard"}))
    example = Engine(charter)
    for name, engine in (("default set", default), ("default set + topic (shadow)", example)):
        controls = [c.id for c in engine.controls_for(Stage.INPUT)]
        print(f"{name}: {', '.join(controls)}", file=sys.stderr)
        scanners.append(
            (
                f"**{name}**",
                lambda t, e=engine: e.evaluate(RequestContext(Stage.INPUT, text=t)),
            )
        )
    print("\n| scanner | 100 B p50 / p99 ms | 1 KB p50 / p99 ms | 10 KB p50 / p99 ms |")
    print("|---|---|---|---|")
    inputs = {size: texts_of(size, repeat) for size in SIZES}
    for name, fn in scanners:
        cells = [percentiles(fn, inputs[size]) for size in SIZES]
        print(f"| {name} | " + " | ".join(f"{p50:.3f} / {p99:.3f}" for p50, p99 in cells) + " |")


def injection_quality() -> None:
    scanner = InjectionScanner("direct")
    test = injection_data.split_prompts()["test"]
    hits = np.array([scanner.scan(e.text).score >= scanner.threshold for e in test])
    labels = np.array([e.label for e in test])
    print(
        f"| injection (direct) | injection_data test split | recall {hits[labels == 1].mean():.3f}"
        f" ({int((labels == 1).sum())}) | FPR {hits[labels == 0].mean():.4f}"
        f" ({int((labels == 0).sum())}) |"
    )


def pii_quality() -> None:
    rows = bench_pii.load_rows(bench_pii.DEFAULT_DATA)
    counts = bench_pii.evaluate(PIIScanner(bench_pii.ENTITIES), rows)
    tp = sum(c.tp for c in counts.values())
    fp = sum(c.fp for c in counts.values())
    fn = sum(c.fn for c in counts.values())
    print(
        f"| pii | presidio_synth, entity level | recall {tp / (tp + fn):.3f} ({tp + fn}) "
        f"| precision {tp / (tp + fp):.3f} |"
    )


def topic_quality() -> None:
    guard = measure.load_guard(EXAMPLE, "advice-topics")
    results = measure.measure(guard, measure.slices(measure.exemplars(guard.topics)))

    def pooled(kind: str, names: tuple[str, ...]) -> tuple[float, int]:
        rows = [r for r in results if r["kind"] == kind and r["slice"].startswith(names)]
        n = sum(r["n"] for r in rows)
        return sum(r["rate"] * r["n"] for r in rows) / n, n

    catch, n_catch = pooled("catch", ("support templates", "hand-written"))
    near, n_near = pooled("false refusal", ("support templates", "hand-written"))
    general, n_general = pooled("false refusal", ("clinc150 held", "banking77"))
    print(
        f"| topic (example charter: {sum(len(t.examples) for t in guard.topics)} examples, "
        f"{sum(len(t.allowed_examples) for t in guard.topics)} allowed examples) | "
        "support-desk test templates and hand-written prompts; CLINC150 + Banking77 held out | "
        f"catch {catch:.3f} ({n_catch}) | false refusals {general:.4f} ({n_general}); "
        f"support questions that mention law, health or money {near:.3f} ({n_near}) |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300, help="timed calls per size")
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args(argv)
    latency(args.repeat)
    if not args.latency_only:
        print("\n| scanner | data (held out) | catch | false positives |\n|---|---|---|---|")
        injection_quality()
        pii_quality()
        topic_quality()
        print("| secrets | no labelled set in shared/data; see tests/guards/test_secrets.py | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
