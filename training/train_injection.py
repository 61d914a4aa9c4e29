"""Train the injection detector and write ``src/charter/guards/models/injection.npz``.

Usage: ``pip install -e '.[train]' && python training/train_injection.py`` (about two minutes on
two cores; ``--direct-only`` or ``--untrusted-only`` with ``--no-test`` for sweeps). The ``direct``
head is carried over byte for byte from the shipped artifact unless ``--retrain-direct`` is given
(a change to the untrusted head does not retrain the direct one); ``--keep-untrusted`` likewise
carries the untrusted head over when only the direct one is retrained. Everything is
deterministic: the splits are hash-based (see ``injection_data.py`` and ``hard_cases.py``), the
solver is liblinear with a fixed seed, and the archive is written with fixed timestamps, so a rerun
on the same data rebuilds the same bytes.

Two heads share one featurizer (``charter.guards.injection.hashed_features``):

- ``direct``: user prompts. Benign: CLINC150, Banking77, GSM8K, GPTeacher role-play and toolformer,
  hand-written hard negatives, templated hard negatives (training templates of ``hard_cases.py``).
  Attacks: Tensor Trust hijacking and extraction, JailbreakBench, hand-written and templated hard
  positives. The hard-case sources may take up to ``HARD_WEIGHT_CAP`` times the mean row weight.
- ``untrusted``: 512-character windows of content the user did not write. Positives: BIPIA contexts
  with training attacks planted at the start, middle or end (only the windows holding the attack),
  plus the direct attacks, plus the templated business documents of ``document_cases.py`` with an
  instruction to the assistant planted (training templates only; only the windows holding it).
  Negatives: clean windows of training contexts, GPTeacher reference answers (prose that looks
  like retrieved text) and the clean templated business documents (delivery notes, instructions,
  policies, invoices...: imperative wording that is not addressed to the assistant).

Thresholds are chosen on the tune split only; for ``direct`` the block threshold must also keep
false refusals on the templated hard negatives of the tune split (templates unseen in training)
within ``HARD_FRR``. The test split and the held-out hard cases are scored at the end, for the model
card; ``--no-test`` skips that during sweeps.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

import injection_data as data

from charter.guards.injection import (
    STRIDE,
    WINDOW,
    InjectionModel,
    hashed_features,
    read_artifact,
    windows,
)

ARTIFACT = data.ROOT / "src" / "charter" / "guards" / "models" / "injection.npz"
BITS = 20
SEED = 20240601
DIRECT_C = 8.0
UNTRUSTED_C = 4.0
# Operating points, chosen on the tune split: block at this benign false-positive rate, escalate
# (send to a human) down to the looser rate.
TARGET_FPR = 0.005
SOURCE_FPR = 0.01
UNTRUSTED_CONTEXT_FPR = 0.02
SOURCE_WEIGHT_CAP = 5.0
# The hard cases (templated and hand-written) are few and matter most: a higher cap lets each such
# source take its full share of its class.
HARD_SOURCES = (
    "templated_negatives",
    "templated_positives",
    "hand_negatives",
    "hand_positives",
    "document_negatives",
    "document_contrast",
    "document_planted",
    "document_contrast_planted",
)
HARD_WEIGHT_CAP = 20.0
# False-refusal budget on the templated hard negatives of the tune split (unseen templates).
HARD_FRR = 0.01
PLANTED = 4
PER_CONTEXT = 8
# Clean context windows are the scarce negatives of the untrusted head: take more, overlapping.
CONTEXT_STRIDE = 128
ESCALATE_FPR = 0.02


@dataclass(frozen=True)
class Row:
    """A training row: a text (already cut to a window where that applies) and its label."""

    text: str
    label: int
    source: str = ""


def featurize(texts: Sequence[str], bits: int = BITS) -> sparse.csr_matrix:
    """Binary features, L2-normalised per row: the exact input the runtime model sees."""
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for text in texts:
        buckets = np.unique(hashed_features(text, bits).buckets)
        n = len(buckets)
        indices.append(buckets)
        values.append(np.full(n, 1.0 / np.sqrt(n) if n else 0.0, dtype=np.float64))
        indptr.append(indptr[-1] + n)
    matrix = sparse.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(texts), 2**bits),
    )
    return matrix


def window_rows(text: str, label: int, source: str = "") -> list[Row]:
    """The text itself plus, when it is longer than a window, each window with the same label."""
    rows = [Row(text, label, source)]
    if len(text) > WINDOW:
        rows.extend(Row(text[s:e], label, source) for s, e in windows(len(text)))
    return rows


def source_weights(
    rows: Sequence[Row], cap: float = SOURCE_WEIGHT_CAP, hard_cap: float = HARD_WEIGHT_CAP
) -> np.ndarray:
    """Sample weights that give each class half the total and, within a class, each source an
    equal share (capped at ``cap`` times the class mean per row): otherwise 18,000 CLINC queries
    drown 2,000 role-play prompts, the hard negatives that matter most."""
    weights = np.empty(len(rows))
    for label in (0, 1):
        idx = [i for i, r in enumerate(rows) if r.label == label]
        counts: dict[str, int] = defaultdict(int)
        for i in idx:
            counts[rows[i].source] += 1
        per_source = len(idx) / len(counts)
        for i in idx:
            limit = hard_cap if rows[i].source in HARD_SOURCES else cap
            weights[i] = min(per_source / counts[rows[i].source], limit)
        weights[idx] *= (len(rows) / 2) / weights[idx].sum()
    return weights


def fit(
    rows: Sequence[Row], c: float, hard_cap: float = HARD_WEIGHT_CAP
) -> tuple[np.ndarray, float]:
    x = featurize([r.text for r in rows])
    y = np.array([r.label for r in rows])
    clf = LogisticRegression(C=c, solver="liblinear", random_state=SEED, max_iter=1000)
    clf.fit(x, y, sample_weight=source_weights(rows, hard_cap=hard_cap))
    # Shipped as float16: rounding here means every figure below is measured on shipped weights.
    weights = clf.coef_[0].astype(np.float16).astype(np.float32)
    return weights, float(clf.intercept_[0])


def as_model(
    variant: str, weights: np.ndarray, bias: float, threshold: float = 0.5
) -> InjectionModel:
    return InjectionModel(
        variant=variant,  # type: ignore[arg-type]
        weights=weights,
        bias=bias,
        bits=BITS,
        threshold=threshold,
        escalate_band=(threshold, threshold),
    )


def scores(model: InjectionModel, texts: Iterable[str]) -> np.ndarray:
    """The runtime score of each text: the maximum over its windows."""
    return np.array([model.score_windows(t)[0] if t.strip() else 0.0 for t in texts])


def threshold_at_fpr(benign_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold whose false-positive rate on ``benign_scores`` is at most ``fpr``."""
    ordered = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fpr * len(ordered)))
    # Block when score >= threshold: put the threshold just above the (allowed+1)-th highest score.
    return float(np.nextafter(ordered[allowed], 1.0)) if allowed < len(ordered) else 0.0


def rates(score: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    hit = score >= threshold
    pos, neg = labels == 1, labels == 0
    out: dict[str, Any] = {"n": len(labels)}
    if pos.any():
        out["recall"] = round(float(hit[pos].mean()), 4)
        out["attacks"] = int(pos.sum())
    if neg.any():
        out["fpr"] = round(float(hit[neg].mean()), 4)
        out["benign"] = int(neg.sum())
    return out


def breakdown(
    score: np.ndarray, examples: Sequence[data.Example], threshold: float
) -> dict[str, dict[str, Any]]:
    """Rates per source and per source/category, plus the pooled figure."""
    labels = np.array([e.label for e in examples])
    keys: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        keys[f"source:{ex.source}"].append(i)
        keys[f"category:{ex.stratum}"].append(i)
    out = {"pooled": rates(score, labels, threshold)}
    for key in sorted(keys):
        idx = np.array(keys[key])
        out[key] = rates(score[idx], labels[idx], threshold)
    return out


# Direct head -------------------------------------------------------------------------------------


def train_direct(
    splits: dict[data.Split, list[data.Example]],
    hard: dict[data.Split, list[data.Example]],
    c: float,
    hard_cap: float = HARD_WEIGHT_CAP,
    hard_frr: float = HARD_FRR,
) -> tuple[InjectionModel, dict[str, Any]]:
    train = [*splits["train"], *hard["train"]]
    rows = [r for ex in train for r in window_rows(ex.text, ex.label, ex.source)]
    weights, bias = fit(rows, c, hard_cap)
    model = as_model("direct", weights, bias)
    tune = splits["tune"]
    tune_scores = scores(model, (e.text for e in tune))
    hard_scores = scores(model, (e.text for e in hard["tune"]))
    hard_benign = np.array(
        [s for s, e in zip(hard_scores, hard["tune"], strict=True) if e.label == 0]
    )
    threshold = max(
        direct_threshold(tune, tune_scores, TARGET_FPR, SOURCE_FPR),
        threshold_at_fpr(hard_benign, hard_frr),
    )
    low = min(
        threshold,
        max(
            direct_threshold(tune, tune_scores, ESCALATE_FPR, 4 * SOURCE_FPR),
            threshold_at_fpr(hard_benign, 3 * hard_frr),
        ),
    )
    model = InjectionModel("direct", weights, bias, BITS, threshold, (low, threshold))
    report = {
        "tune": breakdown(tune_scores, tune, threshold),
        "tune_hard": breakdown(hard_scores, hard["tune"], threshold),
    }
    return model, report


def direct_threshold(
    examples: Sequence[data.Example], score: np.ndarray, pooled_fpr: float, source_fpr: float
) -> float:
    """The lowest threshold that keeps the pooled benign FPR within ``pooled_fpr`` and the FPR of
    every benign source with at least 100 tune rows within ``source_fpr``."""
    labels = np.array([e.label for e in examples])
    out = threshold_at_fpr(score[labels == 0], pooled_fpr)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        if ex.label == 0:
            by_source[ex.source].append(i)
    for idx in by_source.values():
        if len(idx) >= 100:
            out = max(out, threshold_at_fpr(score[np.array(idx)], source_fpr))
    return out


# Untrusted head ----------------------------------------------------------------------------------


def _attack_windows(doc: data.Document | data.document_cases.DocumentCase) -> list[str]:
    """The windows of ``doc`` that hold the whole planted attack (or, if it is longer than a
    window, overlap it by half a window)."""
    start, end = doc.span
    need = min(end - start, STRIDE)
    out = []
    for s, e in windows(len(doc.text)):
        if min(e, end) - max(s, start) >= need:
            out.append(doc.text[s:e])
    return out


def document_rows(cases: Sequence[data.document_cases.DocumentCase]) -> list[Row]:
    """Rows of the templated business documents: every window of a clean document is benign, the
    windows of a planted document that hold the planted instruction are attacks. The training-only
    contrast documents (the attacks' vocabulary, not addressed to the assistant), clean and
    planted, are sources of their own, so each takes a share of its class beside the other
    documents (on tune: 72.9 % of planted documents caught at 0 % clean refused, against 66.7 % at
    0.5 % with the contrast documents pooled into the other document sources)."""
    rows: list[Row] = []
    for case in cases:
        contrast = "_contrast" if case.group.startswith("train-only/") else ""
        if case.label:
            source = f"document{contrast}_planted"
            rows.extend(Row(w, 1, source) for w in _attack_windows(case))
        else:
            source = "document_contrast" if contrast else "document_negatives"
            rows.extend(Row(w, 0, source) for w in _split_windows(case.text))
    return rows


def document_report(
    model: InjectionModel, cases: Sequence[data.document_cases.DocumentCase], threshold: float
) -> dict[str, Any]:
    """Refusals of clean documents by kind, detection of planted ones by kind, attack category
    and position, and the pooled figures."""
    score = scores(model, (c.text for c in cases))
    labels = np.array([c.label for c in cases])
    keys: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        keys[f"kind:{case.kind}"].append(i)
        if case.label:
            keys[f"attack:{case.attack}"].append(i)
            keys[f"position:{case.position}"].append(i)
    out = {"pooled": rates(score, labels, threshold)}
    for key in sorted(keys):
        idx = np.array(keys[key])
        out[key] = rates(score[idx], labels[idx], threshold)
    return out


def untrusted_rows(
    contexts: Sequence[data.Context],
    attacks: Sequence[data.Attack],
    prompts: Sequence[data.Example],
    extra_benign: Sequence[str],
    per_context: int,
    planted: int,
    rng: np.random.Generator,
) -> list[Row]:
    rows: list[Row] = []
    # A request addressed to the assistant is out of place in a document whoever wrote it, so
    # benign user prompts planted in a context are positives too: this teaches the shape of an
    # injected task without showing the model any BIPIA attack outside the training split.
    requests = [
        data.Attack(ex.id, f"planted/{ex.source}", ex.text)
        for ex in prompts
        if ex.label == 0 and len(ex.text) <= STRIDE
    ]
    for ctx in contexts:
        rows.extend(
            Row(ctx.text[s:e], 0, f"context/{ctx.task}")
            for s, e in windows(len(ctx.text), WINDOW, CONTEXT_STRIDE)
        )
        for pool, source, n in ((attacks, "bipia", per_context), (requests, "planted", planted)):
            for k in rng.choice(len(pool), size=min(n, len(pool)), replace=False):
                position = data.POSITIONS[int(rng.integers(len(data.POSITIONS)))]
                doc = data.plant(ctx, pool[int(k)], position)
                rows.extend(Row(w, 1, source) for w in _attack_windows(doc))
    # Every direct attack is hostile in a document too.
    rows.extend(r for ex in prompts if ex.label == 1 for r in window_rows(ex.text, 1, ex.source))
    rows.extend(
        Row(w_text, 0, "reference_answers")
        for text in extra_benign
        for w_text in _split_windows(text)
    )
    return rows


def _split_windows(text: str) -> list[str]:
    return [text[s:e] for s, e in windows(len(text))]


def reference_answers(split: data.Split) -> list[str]:
    """GPTeacher reference outputs (model-written prose) whose prompt falls in ``split``."""
    splits = data.assign_splits(data.load_prompts())
    out = []
    for name in ("gpteacher_roleplay", "gpteacher_toolformer"):
        for row in data._read(data.data_dir() / data.BENIGN_FILES[name]):
            if splits.get(str(row["id"])) == split and row.get("reference_output"):
                out.append(str(row["reference_output"]))
    return out


def indirect_eval(
    model: InjectionModel, contexts: Sequence[data.Context], attacks: Sequence[data.Attack]
) -> tuple[np.ndarray, list[data.Document]]:
    docs = data.documents(list(contexts), list(attacks))
    return scores(model, (d.text for d in docs)), docs


def indirect_breakdown(
    score: np.ndarray, docs: Sequence[data.Document], threshold: float
) -> dict[str, Any]:
    labels = np.array([d.label for d in docs])
    keys: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        keys[f"task:{d.context.task}"].append(i)
        if d.attack is not None:
            keys[f"position:{d.position}"].append(i)
            keys[f"attack:{d.attack.category}"].append(i)
    out = {"pooled": rates(score, labels, threshold)}
    for key in sorted(keys):
        idx = np.array(keys[key])
        out[key] = rates(score[idx], labels[idx], threshold)
    return out


def train_untrusted(
    prompt_splits: dict[data.Split, list[data.Example]],
    c: float,
    per_context: int = PER_CONTEXT,
    planted: int = PLANTED,
    with_documents: bool = True,
) -> tuple[InjectionModel, dict[str, Any]]:
    ctx, atk = data.split_indirect()
    docs = data.document_splits()
    rng = np.random.default_rng(SEED)
    rows = untrusted_rows(
        ctx["train"],
        atk["train"],
        # Not the templated hard cases: with them, tune detection fell from 90.6 % to 89.7 %.
        prompt_splits["train"],
        reference_answers("train"),
        per_context,
        planted,
        rng,
    )
    if with_documents:
        rows.extend(document_rows(docs["train"]))
    weights, bias = fit(rows, c)
    model = as_model("untrusted", weights, bias)
    tune_scores, tune_docs = indirect_eval(model, ctx["tune"], atk["tune"])
    tune_labels = np.array([d.label for d in tune_docs])
    # Clean tune contexts and held-out reference answers set the false-positive rate. Only 200
    # clean contexts exist for tuning and they score higher than prose, so they get a looser bound.
    clean = tune_scores[tune_labels == 0]
    prose = scores(model, reference_answers("tune"))
    # The templated documents of the tune split are reported, not budgeted: a 1 % budget on them
    # would let no tune template fail in any of its 8 fillings, and the one that does ("please
    # rate your purchase and tell us how we did") raised the threshold to 0.93 and cut BIPIA tune
    # detection from 90 % to 57 %.
    threshold = max(
        threshold_at_fpr(clean, UNTRUSTED_CONTEXT_FPR), threshold_at_fpr(prose, SOURCE_FPR)
    )
    low = min(
        threshold,
        max(threshold_at_fpr(clean, 2.5 * UNTRUSTED_CONTEXT_FPR), threshold_at_fpr(prose, 0.03)),
    )
    model = InjectionModel("untrusted", weights, bias, BITS, threshold, (low, threshold))
    report = {
        "tune": indirect_breakdown(tune_scores, tune_docs, threshold),
        "tune_documents": document_report(model, docs["tune"], threshold),
    }
    return model, report


# Artifact ----------------------------------------------------------------------------------------


def write_artifact(path: Path, models: Sequence[InjectionModel], meta: dict[str, Any]) -> None:
    """An ``.npz`` readable by ``numpy.load``, written with fixed timestamps so reruns match."""
    arrays = {f"{m.variant}_weights": m.weights.astype(np.float16) for m in models}
    arrays["meta"] = np.frombuffer(
        json.dumps(meta, sort_keys=True, indent=1).encode(), dtype=np.uint8
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata of the artifact at ``path``."""
    with np.load(path, allow_pickle=False) as archive:
        meta: dict[str, Any] = json.loads(bytes(archive["meta"]).decode())
    return meta


def model_meta(model: InjectionModel, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "bias": model.bias,
        "bits": model.bits,
        "threshold": round(model.threshold, 6),
        "escalate_band": [round(model.escalate_band[0], 6), round(model.escalate_band[1], 6)],
        "metrics": report,
    }


def untrusted_with_tune_report(
    splits: dict[data.Split, list[data.Example]], args: argparse.Namespace
) -> tuple[InjectionModel, dict[str, Any]]:
    """Train the untrusted head with the command line's settings and print its tune figures."""
    untrusted, report = train_untrusted(
        splits,
        args.untrusted_c,
        args.per_context,
        args.planted,
        with_documents=not args.no_documents,
    )
    print(
        "untrusted tune",
        json.dumps(report["tune"]["pooled"]),
        f"t={untrusted.threshold:.4f}",
        "documents",
        json.dumps(report["tune_documents"]["pooled"]),
        file=sys.stderr,
    )
    return untrusted, report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ARTIFACT)
    parser.add_argument("--direct-c", type=float, default=DIRECT_C)
    parser.add_argument("--untrusted-c", type=float, default=UNTRUSTED_C)
    parser.add_argument("--hard-cap", type=float, default=HARD_WEIGHT_CAP)
    parser.add_argument("--planted", type=int, default=PLANTED)
    parser.add_argument("--per-context", type=int, default=PER_CONTEXT)
    parser.add_argument(
        "--untrusted-only",
        action="store_true",
        help="sweeps: train and tune the untrusted head only",
    )
    parser.add_argument("--hard-frr", type=float, default=HARD_FRR)
    parser.add_argument(
        "--no-test", action="store_true", help="tune only: do not score the test split (for sweeps)"
    )
    parser.add_argument(
        "--direct-only", action="store_true", help="sweeps: train and tune the direct head only"
    )
    parser.add_argument(
        "--retrain-direct",
        action="store_true",
        help="retrain the direct head too; by default it is carried over unchanged from "
        "--direct-from (its weights, threshold and metrics, byte for byte)",
    )
    parser.add_argument(
        "--direct-from",
        type=Path,
        default=ARTIFACT,
        help="the artifact whose direct head is carried over (default: the shipped one)",
    )
    parser.add_argument(
        "--keep-untrusted",
        action="store_true",
        help="carry the untrusted head over unchanged from --untrusted-from (its weights, "
        "threshold and metrics, byte for byte) instead of retraining it: for a change to the "
        "direct head only",
    )
    parser.add_argument(
        "--untrusted-from",
        type=Path,
        default=ARTIFACT,
        help="the artifact whose untrusted head --keep-untrusted carries over (default: the "
        "shipped one)",
    )
    parser.add_argument(
        "--no-documents",
        action="store_true",
        help="comparison: train the untrusted head without the templated documents",
    )
    args = parser.parse_args(argv)
    t0 = time.time()
    splits = data.split_prompts()
    hard = data.hard_splits()
    print(
        {k: len(v) for k, v in splits.items()},
        {k: len(v) for k, v in hard.items()},
        file=sys.stderr,
    )
    if args.untrusted_only:
        untrusted_with_tune_report(splits, args)
        return 0
    if args.retrain_direct or args.direct_only:
        direct, direct_report = train_direct(
            splits, hard, args.direct_c, hard_cap=args.hard_cap, hard_frr=args.hard_frr
        )
        tune_hard = direct_report["tune_hard"]
        print(
            "direct tune",
            json.dumps(direct_report["tune"]["pooled"]),
            f"t={direct.threshold:.4f}",
            "roleplay",
            json.dumps(direct_report["tune"]["source:gpteacher_roleplay"]),
            "hard-neg",
            json.dumps(tune_hard["source:templated_negatives"]),
            "hard-pos",
            json.dumps(tune_hard["source:templated_positives"]),
            file=sys.stderr,
        )
        direct_meta = model_meta(direct, direct_report)
    else:
        # The direct head is not what a change to the untrusted head retrains: carry it over as
        # shipped. (Retraining it with the same code and data on another machine's BLAS moved its
        # threshold in the fifth decimal.)
        direct = read_artifact(args.direct_from)["direct"]
        direct_meta = read_meta(args.direct_from)["direct"]
        print(f"direct carried over from {args.direct_from}", file=sys.stderr)
    if args.direct_only:
        return 0
    if args.keep_untrusted:
        # A change to the direct head does not retrain the untrusted one: carry it over as shipped
        # (weights, threshold, band and metrics), so its bytes and figures do not move.
        untrusted = read_artifact(args.untrusted_from)["untrusted"]
        untrusted_meta = read_meta(args.untrusted_from)["untrusted"]
        print(f"untrusted carried over from {args.untrusted_from}", file=sys.stderr)
    else:
        untrusted, untrusted_report = untrusted_with_tune_report(splits, args)
    if not args.no_test and args.retrain_direct:
        test = splits["test"]
        direct_meta["metrics"]["test"] = breakdown(
            scores(direct, (e.text for e in test)), test, direct.threshold
        )
        direct_meta["metrics"]["test_hard"] = breakdown(
            scores(direct, (e.text for e in hard["test"])), hard["test"], direct.threshold
        )
        print("direct test", json.dumps(direct_meta["metrics"]["test"]["pooled"]), file=sys.stderr)
    if not args.no_test and not args.keep_untrusted:
        ctx, atk = data.split_indirect()
        s, docs = indirect_eval(untrusted, ctx["test"], atk["test"])
        untrusted_report["test"] = indirect_breakdown(s, docs, untrusted.threshold)
        ref = scores(untrusted, reference_answers("test"))
        untrusted_report["test"]["reference_answers"] = rates(
            ref, np.zeros(len(ref), int), untrusted.threshold
        )
        untrusted_report["test_documents"] = document_report(
            untrusted, data.document_splits()["test"], untrusted.threshold
        )
        evaluation = data.eval_documents()
        untrusted_report["eval_documents"] = breakdown(
            scores(untrusted, (e.text for e in evaluation)), evaluation, untrusted.threshold
        )
        print("untrusted test", json.dumps(untrusted_report["test"]["pooled"]), file=sys.stderr)
        print(
            "untrusted documents test",
            json.dumps(untrusted_report["test_documents"]["pooled"]),
            "eval",
            json.dumps(untrusted_report["eval_documents"]["pooled"]),
            file=sys.stderr,
        )
    meta = {
        "format": 1,
        "window": WINDOW,
        "stride": STRIDE,
        "seed": SEED,
        "c": {"direct": args.direct_c, "untrusted": args.untrusted_c},
        "target_fpr": TARGET_FPR,
        "source_fpr": SOURCE_FPR,
        "untrusted_context_fpr": UNTRUSTED_CONTEXT_FPR,
        "escalate_fpr": ESCALATE_FPR,
        "hard_weight_cap": args.hard_cap,
        "hard_frr": args.hard_frr,
        "planted": args.planted,
        "per_context": args.per_context,
        "documents": not args.no_documents,
        "direct": direct_meta,
        "untrusted": untrusted_meta
        if args.keep_untrusted
        else model_meta(untrusted, untrusted_report),
    }
    write_artifact(args.out, [direct, untrusted], meta)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
