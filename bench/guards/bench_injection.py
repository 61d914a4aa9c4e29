"""Benchmark of the injection scanner: held-out quality per source and category, and latency.

Usage: ``python bench/guards/bench_injection.py [--repeat 300] [--artifact PATH]``. Quality is
measured on the test split of ``training/injection_data.py`` (never trained or tuned on) at the
shipped thresholds, on the held-out hard cases (templated cases whose templates are in the test
split, plus the three hand-written evaluation sets), and for ``untrusted`` on the held-out templated
business documents (``training/document_cases.py``) and the hand-written evaluation documents;
``--artifact`` scores another artifact (an earlier one, for a before / after). Quality is scored as
the scanner scores by default: ``direct`` with its de-obfuscated views (``charter.guards.views``),
``untrusted`` without; ``--no-views`` scores ``direct`` on the text alone (the scanner before
views); ``--views-overhead`` times ``direct`` without and with views, interleaved. The held-out
hard cases include the third (obfuscation) evaluation set, sources
``eval_v3_negatives`` and ``eval_v3_positives``. Latency is wall time of ``InjectionScanner.scan``
on one core, after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))

import injection_data as data

from charter.guards.injection import InjectionModel, InjectionScanner, load_model, read_artifact

VIEWS = {"direct": True, "untrusted": False}
"""Whether each variant is scored with its de-obfuscated views (the scanner's defaults)."""


def _hits(model: InjectionModel, texts: Sequence[str]) -> np.ndarray:
    """Whether each text scores at or above the model's block threshold, as the scanner decides."""
    views = VIEWS[model.variant]
    return np.array(
        [bool(t.strip()) and model.score_views(t, views)[0] >= model.threshold for t in texts]
    )


def _row(name: str, hits: np.ndarray, labels: np.ndarray) -> str:
    pos, neg = labels == 1, labels == 0
    recall = f"{hits[pos].mean():.3f}" if pos.any() else "-"
    fpr = f"{hits[neg].mean():.4f}" if neg.any() else "-"
    return f"| {name} | {int(pos.sum())} | {recall} | {int(neg.sum())} | {fpr} |"


def _table(title: str, groups: dict[str, list[int]], hits: np.ndarray, labels: np.ndarray) -> None:
    print(f"\n{title}\n\n| slice | attacks | recall | benign | FPR |\n|---|---|---|---|---|")
    for name in sorted(groups, key=lambda k: (k != "pooled", k)):
        idx = np.array(groups[name])
        print(_row(name, hits[idx], labels[idx]))


def direct_quality(model: InjectionModel) -> None:
    test = data.split_prompts()["test"]
    hits = _hits(model, [e.text for e in test])
    labels = np.array([e.label for e in test])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(test):
        groups["pooled"].append(i)
        groups[ex.stratum].append(i)
    _table(f"direct, held-out test split, threshold {model.threshold:.4f}", groups, hits, labels)


def hard_quality(model: InjectionModel) -> None:
    test = data.hard_splits()["test"]
    hits = _hits(model, [e.text for e in test])
    labels = np.array([e.label for e in test])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(test):
        groups["pooled"].append(i)
        groups[ex.source].append(i)
        groups[ex.stratum].append(i)
    title = (
        "direct, held-out hard cases (unseen templates, hand-written), "
        f"threshold {model.threshold:.4f}"
    )
    _table(title, groups, hits, labels)


def indirect_quality(model: InjectionModel) -> None:
    contexts, attacks = data.split_indirect()
    docs = data.documents(contexts["test"], attacks["test"])
    hits = _hits(model, [d.text for d in docs])
    labels = np.array([d.label for d in docs])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        groups["pooled"].append(i)
        groups[f"task {doc.context.task}"].append(i)
        if doc.attack is not None:
            groups[f"position {doc.position}"].append(i)
            groups[doc.attack.category].append(i)
    title = f"untrusted, held-out contexts x held-out attacks, threshold {model.threshold:.4f}"
    _table(title, groups, hits, labels)


def document_quality(model: InjectionModel) -> None:
    """Templated business documents whose document and attack templates are in the test split,
    and the hand-written evaluation documents (never trained or tuned on)."""
    test = data.document_splits()["test"]
    hits = _hits(model, [c.text for c in test])
    labels = np.array([c.label for c in test])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(test):
        groups["pooled"].append(i)
        groups[f"kind {case.kind}"].append(i)
        if case.label:
            groups[f"attack {case.attack}"].append(i)
            groups[f"position {case.position}"].append(i)
    title = f"untrusted, held-out templated documents, threshold {model.threshold:.4f}"
    _table(title, groups, hits, labels)
    evaluation = data.eval_documents()
    hits = _hits(model, [e.text for e in evaluation])
    labels = np.array([e.label for e in evaluation])
    groups = defaultdict(list)
    for i, ex in enumerate(evaluation):
        groups["pooled"].append(i)
        groups[("attack " if ex.label else "document ") + ex.category].append(i)
    title = f"untrusted, hand-written evaluation documents, threshold {model.threshold:.4f}"
    _table(title, groups, hits, labels)


def latency(scanners: Sequence[InjectionScanner], repeat: int) -> None:
    test = data.split_prompts()["test"]
    corpus = "\n".join(e.text for e in test if e.label == 0)
    # CPU time of the calling thread beside wall time: on a shared, loaded machine wall time
    # measures the neighbours, CPU time measures the scanner.
    print(
        "\nlatency of scan(), one core\n\n"
        "| scanner | size | wall p50 ms | wall p99 ms | CPU p50 ms | CPU p99 ms |\n"
        "|---|---|---|---|---|---|"
    )
    for scanner in scanners:
        for size in (100, 1_000, 10_000):
            # Different slices each call, so no cache or branch predictor sees one text only.
            offsets = np.random.default_rng(size).integers(0, len(corpus) - size, repeat + 20)
            texts = [corpus[o : o + size] for o in offsets]
            for text in texts[:20]:
                scanner.scan(text)
            wall, cpu = [], []
            for text in texts[20:]:
                start, start_cpu = time.perf_counter(), time.thread_time()
                scanner.scan(text)
                cpu.append(time.thread_time() - start_cpu)
                wall.append(time.perf_counter() - start)
            w50, w99 = np.percentile(wall, [50, 99]) * 1e3
            c50, c99 = np.percentile(cpu, [50, 99]) * 1e3
            print(f"| {scanner.name} | {size} B | {w50:.3f} | {w99:.3f} | {c50:.3f} | {c99:.3f} |")


def views_overhead(repeat: int) -> None:
    """CPU time of ``direct`` without and with views, interleaved call by call on the same texts,
    so load on a shared machine hits both columns alike."""
    test = data.split_prompts()["test"]
    corpus = "\n".join(e.text for e in test if e.label == 0)
    on, off = InjectionScanner("direct"), InjectionScanner("direct", views=False)
    print(
        "\nviews overhead, direct, interleaved, one core\n\n"
        "| size | CPU p50 ms, no views | CPU p50 ms, views | ratio |\n|---|---|---|---|"
    )
    for size in (100, 1_000, 10_000):
        offsets = np.random.default_rng(size).integers(0, len(corpus) - size, repeat + 20)
        texts = [corpus[o : o + size] for o in offsets]
        for text in texts[:20]:
            on.scan(text)
            off.scan(text)
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for text in texts[20:]:
            for views, scanner in ((False, off), (True, on)):
                start = time.thread_time()
                scanner.scan(text)
                cpu[views].append(time.thread_time() - start)
        without, with_views = (float(np.percentile(cpu[v], 50)) * 1e3 for v in (False, True))
        print(f"| {size} B | {without:.3f} | {with_views:.3f} | {with_views / without:.3f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300, help="timed calls per size")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument(
        "--untrusted-only", action="store_true", help="quality of the untrusted head only"
    )
    parser.add_argument(
        "--artifact", type=Path, help="score this artifact instead of the shipped one (no latency)"
    )
    parser.add_argument(
        "--no-views", action="store_true", help="score direct on the text alone, without views"
    )
    parser.add_argument(
        "--views-overhead",
        action="store_true",
        help="only the CPU time of direct without and with views, interleaved",
    )
    args = parser.parse_args(argv)
    if args.views_overhead:
        views_overhead(args.repeat)
        return 0
    VIEWS["direct"] = not args.no_views
    if args.artifact is not None:
        models = read_artifact(args.artifact)
        direct_model, untrusted_model = models["direct"], models["untrusted"]
    else:
        direct_model, untrusted_model = load_model("direct"), load_model("untrusted")
    if not args.latency_only:
        if not args.untrusted_only:
            direct_quality(direct_model)
            hard_quality(direct_model)
        indirect_quality(untrusted_model)
        document_quality(untrusted_model)
    if args.artifact is None and not args.quality_only:
        direct = InjectionScanner("direct", views=not args.no_views)
        latency([direct, InjectionScanner("untrusted")], args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
