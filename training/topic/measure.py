"""Measure a charter's topic guard on held-out data: catch rate and false refusals, per topic.

Usage::

    .venv/bin/python training/topic/measure.py [--charter examples/support-desk/charter.yaml]
        [--control advice-topics] [--json out.json]

It builds the guard exactly as the charter compiles it (``TopicScanner`` on the control's topics)
and scores every slice below with the control's threshold (default 0.5) and escalate band, if
any. Rows that appear in the charter's own examples or allowed examples are dropped from every
slice (the count says how many remain), so nothing is measured on text the guard learned from.

Slices (``training/topic/data``; see its README):

- catch: the test templates of ``support_templates.yaml`` (legal-advice, medical-advice), the
  hand-written advice prompts (``raw/*_advice.txt``), advice-giving answers (output stage);
- false refusals: the test templates' benign support questions that mention law, health or money,
  the held-out half of the hand-written hard negatives, benign answers (including refusals that
  name legal or medical advice), and the held-out splits of CLINC150, Banking77, GPTeacher and
  GSM8K from the shared data (``$CHARTER_SHARED_DATA`` or ``../shared/data``).

To measure the scanner of another revision on the same data (the "before" figures), put that
revision's ``src`` first on the path: ``PYTHONPATH=/tmp/base/src .venv/bin/python
training/topic/measure.py --charter /tmp/base/examples/support-desk/charter.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import support_data
import train_topic

ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "support-desk" / "charter.yaml"


@dataclass(frozen=True)
class Slice:
    name: str
    kind: str  # "catch" or "false refusal"
    texts: list[str]
    topic: str | None = None  # the topic a catch slice belongs to


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def slices(exclude: set[str]) -> list[Slice]:
    """Every measured slice, without the rows in ``exclude`` (normalised text)."""
    corpus = train_topic.load_corpus()
    rows = support_data.load_rows()
    out = [
        Slice(
            "support templates, test: legal advice",
            "catch",
            support_data.texts(rows, "legal-advice", "test"),
            "legal-advice",
        ),
        Slice(
            "support templates, test: medical advice",
            "catch",
            support_data.texts(rows, "medical-advice", "test"),
            "medical-advice",
        ),
        Slice(
            "hand-written legal advice prompts",
            "catch",
            corpus.positives["legal-advice"],
            "legal-advice",
        ),
        Slice(
            "hand-written medical advice prompts",
            "catch",
            corpus.positives["medical-advice"],
            "medical-advice",
        ),
        Slice(
            "legal advice answers (output)", "catch", corpus.answers["legal-advice"], "legal-advice"
        ),
        Slice(
            "medical advice answers (output)",
            "catch",
            corpus.answers["medical-advice"],
            "medical-advice",
        ),
        Slice(
            "support templates, test: mentions law",
            "false refusal",
            support_data.texts(rows, "benign-legal", "test"),
        ),
        Slice(
            "support templates, test: mentions health",
            "false refusal",
            support_data.texts(rows, "benign-medical", "test"),
        ),
        Slice(
            "support templates, test: mentions money",
            "false refusal",
            support_data.texts(rows, "benign-financial", "test"),
        ),
        Slice(
            "hand-written hard negatives, held out",
            "false refusal",
            [r for r in corpus.hard_negatives if train_topic.bucket(r) >= 50],
        ),
        Slice(
            "support answers (output), incl. refusals naming advice",
            "false refusal",
            corpus.answers["benign"],
        ),
    ]
    for name, texts in corpus.benign_test.items():
        out.append(Slice(f"{name} held out (first 3,000)", "false refusal", texts[:3000]))
    return [
        Slice(s.name, s.kind, [t for t in s.texts if _norm(t) not in exclude], s.topic) for s in out
    ]


@dataclass(frozen=True)
class Guard:
    """The control as the engine runs it: scanner, threshold and escalate band."""

    scanner: Any
    threshold: float
    band: tuple[float, float] | None
    topics: list[Any]


def dev_topics(topics: Sequence[Any]) -> list[train_topic.Topic]:
    """The charter's topics (their descriptions) with one row of every dev template as examples
    (its own label) or allowed examples (the benign labels, given to the first topic)."""
    rows = support_data.load_rows()
    first: dict[str, support_data.Row] = {}
    for row in rows:
        if row.split == "dev":
            first.setdefault(row.template, row)
    allowed = [r.text for r in first.values() if r.label in support_data.BENIGN]
    out = []
    for i, t in enumerate(topics):
        examples = [r.text for r in first.values() if r.label == t.name]
        if not examples:
            raise SystemExit(f"--all-dev: no dev templates labelled `{t.name}`")
        out.append(train_topic.Topic(t.name, t.description, examples, allowed if i == 0 else []))
    return out


def load_guard(
    charter: Path, control_id: str, *, all_dev: bool = False, band: str | None = None
) -> Guard:
    from charter.document.loader import load_charter
    from charter.guards.topic import DEFAULT_THRESHOLD, TopicScanner

    document = load_charter(charter).require()
    control = next((c for c in document.controls if c.id == control_id), None)
    if control is None:
        raise SystemExit(f"{charter}: no control `{control_id}`")
    settings = control.settings
    threshold = settings.threshold if settings.threshold is not None else DEFAULT_THRESHOLD
    escalate = tuple(settings.escalate_band) if settings.escalate_band else None
    if band is not None:
        low, high = (float(x) for x in band.split(","))
        escalate = (low, high)
    topics = dev_topics(settings.topics) if all_dev else list(settings.topics)
    return Guard(TopicScanner(topics), threshold, escalate, topics)


def exemplars(topics: Sequence[Any]) -> set[str]:
    out: set[str] = set()
    for t in topics:
        out |= {_norm(x) for x in (t.description, *t.examples, *getattr(t, "allowed_examples", ()))}
    return out


def measure(guard: Guard, parts: list[Slice]) -> list[dict[str, Any]]:
    results = []
    for part in parts:
        scored = [guard.scanner.scan(t) for t in part.texts]
        scores = np.array([r.score for r in scored])
        if guard.band is not None:
            escalated = (scores >= guard.band[0]) & (scores < guard.band[1])
        else:
            escalated = np.zeros(len(scores), bool)
        blocked = (scores >= guard.threshold) & ~escalated
        fired = blocked | escalated
        by_topic: dict[str, int] = {}
        for r, f in zip(scored, fired, strict=True):
            if f and r.spans:
                name = r.spans[0].label.removeprefix("topic:")
                by_topic[name] = by_topic.get(name, 0) + 1
        results.append(
            {
                "slice": part.name,
                "kind": part.kind,
                "topic": part.topic,
                "n": len(part.texts),
                "rate": float(fired.mean()) if len(fired) else float("nan"),
                "blocked": float(blocked.mean()) if len(fired) else float("nan"),
                "escalated": float(escalated.mean()) if len(fired) else float("nan"),
                "by_topic": by_topic,
                "misses": [
                    t for t, f in zip(part.texts, fired, strict=True) if f == (part.kind != "catch")
                ][:200],
            }
        )
    return results


def scan_p50_ms(guard: Guard, repeat: int = 300) -> float:
    rows = support_data.texts(support_data.load_rows(), "benign-financial", "test")
    text = " ".join(rows)[:1024]
    for _ in range(20):
        guard.scanner.scan(text)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        guard.scanner.scan(text)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples) * 1e3)


def table(results: list[dict[str, Any]], band: bool) -> str:
    lines = [
        "| slice | kind | rows | rate | blocked / escalated | fired by topic |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        split = f"{r['blocked']:.1%} / {r['escalated']:.1%}" if band else ""
        topics = ", ".join(f"{k} {v}" for k, v in sorted(r["by_topic"].items()))
        lines.append(
            f"| {r['slice']} | {r['kind']} | {r['n']} | **{r['rate']:.1%}** | {split} | {topics} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charter", type=Path, default=EXAMPLE)
    parser.add_argument("--control", default="advice-topics")
    parser.add_argument("--json", type=Path, help="also write every figure and miss here")
    parser.add_argument("--misses", action="store_true", help="print the rows it got wrong")
    parser.add_argument(
        "--all-dev",
        action="store_true",
        help="replace the examples by one row of every dev template (allowed examples likewise)",
    )
    parser.add_argument("--band", metavar="LOW,HIGH", help="measure with this escalate band")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    guard = load_guard(args.charter, args.control, all_dev=args.all_dev, band=args.band)
    built = time.perf_counter() - started
    results = measure(guard, slices(exemplars(guard.topics)))
    print(
        f"charter {args.charter}, control {args.control}: {len(guard.topics)} topics, "
        f"{sum(len(t.examples) for t in guard.topics)} examples, "
        f"{sum(len(getattr(t, 'allowed_examples', ())) for t in guard.topics)} allowed examples; "
        f"threshold {guard.threshold}, escalate band {guard.band}; compiled in {built:.2f} s\n"
    )
    print(table(results, guard.band is not None))
    print(f"\nscan p50 {scan_p50_ms(guard):.3f} ms on a 1 KB support message (one thread)")
    if args.misses:
        for r in results:
            if r["misses"] and not r["slice"].endswith("(first 3,000)"):
                print(f"\n{r['slice']} ({r['kind']}): wrong on")
                for text in r["misses"]:
                    print(f"  - {text}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
