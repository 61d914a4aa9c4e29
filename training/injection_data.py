"""Data for the injection detector: loading, deterministic splits, and indirect-injection documents.

Shared by ``train_injection.py``, ``bench/guards/bench_injection.py`` and the tests, so every one of
them sees the same train / tune / test split. Splits are a pure function of the data: rows are
grouped (near-duplicates share a group), groups are ordered by a SHA-256 of their key within each
stratum (source and category) and cut 70 / 15 / 15. No random state is involved.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import document_cases
import hard_cases
import shared_data

Split = Literal["train", "tune", "test"]
ROOT = Path(__file__).resolve().parent.parent
HAND_WRITTEN = ROOT / "training" / "data"

BENIGN_FILES = {
    "clinc150": "prompts/benign_clinc150.jsonl",
    "banking77": "prompts/benign_banking77.jsonl",
    "gsm8k": "prompts/benign_gsm8k.jsonl",
    "gpteacher_roleplay": "prompts/benign_gpteacher_roleplay.jsonl",
    "gpteacher_toolformer": "prompts/benign_gpteacher_toolformer.jsonl",
}
ATTACK_FILES = {
    "tensor_trust_hijacking": "prompts/attacks_tensor_trust_hijacking.jsonl",
    "tensor_trust_extraction": "prompts/attacks_tensor_trust_extraction.jsonl",
    "jailbreakbench": "prompts/attacks_jailbreakbench.jsonl",
}
HAND_FILES = {
    "hand_negatives": "hard_negatives.jsonl",
    "hand_positives": "hard_positives.jsonl",
}
# Hand-written for evaluation only: never trained or tuned on, whatever the split says.
EVAL_FILES = {
    "eval_negatives": "eval_hard_negatives.jsonl",
    "eval_positives": "eval_hard_positives.jsonl",
    # The second evaluation set, written before any model was scored on it, after the first one
    # had been looked at message by message (see data/README.md).
    "eval_v2_negatives": "eval_hard_negatives_v2.jsonl",
    "eval_v2_positives": "eval_hard_positives_v2.jsonl",
}
# The third evaluation set (obfuscated attacks and benign messages with the same surface features:
# codes, base64, hex, leet tags, spaced letters), written before any model was scored on it. One
# file holds both labels; its rows are sources ``eval_v3_negatives`` and ``eval_v3_positives``.
EVAL_V3 = "eval_obfuscated_v3.jsonl"
EVAL_V3_SOURCES = ("eval_v3_negatives", "eval_v3_positives")
# Hand-written documents for the untrusted head, for evaluation only: never trained or tuned on.
EVAL_DOCUMENTS = "eval_untrusted_documents.jsonl"
POSITIONS = ("start", "middle", "end")


@dataclass(frozen=True)
class Example:
    """One labelled text. ``label`` is 1 for an attack; ``group`` ties near-duplicates together."""

    id: str
    text: str
    label: int
    source: str
    category: str
    group: str

    @property
    def stratum(self) -> str:
        return f"{self.source}/{self.category}"


def data_dir() -> Path:
    """The shared data directory (``shared_data``), checked to hold ``prompts/``."""
    return shared_data.data_file("prompts").parent


def _read(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _group_key(source: str, row: dict[str, object]) -> str:
    text = str(row["text"])
    if source == "jailbreakbench":
        # JBC wraps every goal in one template and PAIR rewrites each goal per target model: the
        # goal is what must not be shared between train and test.
        return f"goal:{row['goal']}"
    if source.startswith("tensor_trust"):
        # Players copied and lightly edited each other's attacks: a shared opening, a shared attack.
        return "tt:" + _squash(text)[:48]
    return _squash(text)


def load_prompts() -> list[Example]:
    """Every direct-prompt example: the shared benign and attack sets plus the hand-written sets.

    Exact duplicates (same label, same text) are dropped; the first occurrence is kept.
    """
    base = data_dir()
    out: list[Example] = []
    seen: set[tuple[int, str]] = set()
    sources: list[tuple[str, Path, int]] = [
        *((name, base / rel, 0) for name, rel in BENIGN_FILES.items()),
        *((name, base / rel, 1) for name, rel in ATTACK_FILES.items()),
        *((name, HAND_WRITTEN / rel, -1) for name, rel in HAND_FILES.items()),
    ]
    for name, path, fixed_label in sources:
        for row in _read(path):
            label = fixed_label if fixed_label >= 0 else int(row["label"] == "attack")
            text = str(row["text"])
            if (label, text) in seen:
                continue
            seen.add((label, text))
            category = str(row.get("category") or "intent")
            if category.startswith("intent/"):
                category = "intent"
            out.append(Example(str(row["id"]), text, label, name, category, _group_key(name, row)))
    return out


def assign_splits(
    items: Iterable[Example], fractions: tuple[float, float] = (0.70, 0.85)
) -> dict[str, Split]:
    """Map each example id to its split, stratified by source/category and grouped by ``group``."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for ex in items:
        groups[ex.stratum][ex.group].append(ex.id)
    out: dict[str, Split] = {}
    for stratum_groups in groups.values():
        keys = sorted(stratum_groups, key=_digest)
        n = len(keys)
        for i, key in enumerate(keys):
            pos = (i + 0.5) / n
            split: Split = (
                "train" if pos < fractions[0] else "tune" if pos < fractions[1] else "test"
            )
            for ex_id in stratum_groups[key]:
                out[ex_id] = split
    return out


def split_prompts() -> dict[Split, list[Example]]:
    """The direct-prompt examples by split."""
    examples = load_prompts()
    splits = assign_splits(examples)
    out: dict[Split, list[Example]] = {"train": [], "tune": [], "test": []}
    for ex in examples:
        out[splits[ex.id]].append(ex)
    return out


def hard_splits() -> dict[Split, list[Example]]:
    """The hard-case sets by split: templated cases by the split of their template
    (``hard_cases.py``), plus the hand-written evaluation sets (both versions), which are all
    ``test``, as is the third (obfuscation) evaluation set.

    Kept apart from :func:`split_prompts` so the shared data's splits and figures stay comparable
    across model versions; the training script adds ``train`` to training and uses ``tune`` for a
    false-refusal budget.
    """
    out: dict[Split, list[Example]] = {"train": [], "tune": [], "test": []}
    for split, cases in hard_cases.templated_cases().items():
        out[split].extend(  # type: ignore[index]
            Example(c.id, c.text, c.label, c.source, c.category, c.group) for c in cases
        )
    for name, rel in EVAL_FILES.items():
        for row in _read(HAND_WRITTEN / rel):
            label = int(row["label"] == "attack")
            text = str(row["text"])
            out["test"].append(
                Example(str(row["id"]), text, label, name, str(row["category"]), _squash(text))
            )
    for row in _read(HAND_WRITTEN / EVAL_V3):
        label = int(row["label"] == "attack")
        text = str(row["text"])
        source = EVAL_V3_SOURCES[label]
        out["test"].append(
            Example(str(row["id"]), text, label, source, str(row["category"]), _squash(text))
        )
    return out


def document_splits() -> dict[Split, list[document_cases.DocumentCase]]:
    """The templated business documents (``document_cases.py``) by the split of their templates."""
    return document_cases.document_cases()  # type: ignore[return-value]


def eval_documents() -> list[Example]:
    """The hand-written evaluation documents (``data/eval_untrusted_documents.jsonl``): ``category``
    is the document kind for a clean document and the planted instruction's kind otherwise."""
    return [
        Example(
            str(row["id"]),
            str(row["text"]),
            int(row["label"] == "attack"),
            "eval_documents",
            str(row["category"]),
            _squash(str(row["text"])),
        )
        for row in _read(HAND_WRITTEN / EVAL_DOCUMENTS)
    ]


# Indirect injection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """A BIPIA context (email, table or code answer) as plain text."""

    id: str
    task: str
    text: str


@dataclass(frozen=True)
class Attack:
    """A BIPIA instruction meant to be planted in a context."""

    id: str
    category: str
    text: str


@dataclass(frozen=True)
class Document:
    """A context with an attack planted at ``position``, or clean (``attack`` is None).

    ``span`` is where the attack sits in ``text``, ``(0, 0)`` for a clean document.
    """

    context: Context
    attack: Attack | None
    position: str
    text: str
    span: tuple[int, int]

    @property
    def label(self) -> int:
        return int(self.attack is not None)


def load_indirect() -> tuple[list[Context], list[Attack]]:
    """The BIPIA contexts and attacks; list-valued contexts (code answers) are joined by lines."""
    base = data_dir() / "indirect"
    contexts = []
    for row in _read(base / "bipia_contexts.jsonl"):
        raw = row["context"]
        text = "\n".join(str(x) for x in raw) if isinstance(raw, list) else str(raw)
        contexts.append(Context(str(row["id"]), str(row["task"]), text))
    attacks = [
        Attack(str(r["id"]), str(r["category"]), str(r["text"]))
        for r in _read(base / "bipia_attacks.jsonl")
    ]
    return contexts, attacks


def _cut(
    items: list[str], key: Callable[[str], str], stratum: Callable[[str], str]
) -> dict[str, Split]:
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_stratum[stratum(item)].append(item)
    out: dict[str, Split] = {}
    for members in by_stratum.values():
        ordered = sorted(members, key=lambda m: _digest(key(m)))
        n = len(ordered)
        for i, member in enumerate(ordered):
            pos = (i + 0.5) / n
            out[member] = "train" if pos < 0.6 else "tune" if pos < 0.8 else "test"
    return out


def split_indirect() -> tuple[dict[Split, list[Context]], dict[Split, list[Attack]]]:
    """Contexts split 60/20/20 per task and attacks 3/1/1 per category: test attacks and test
    contexts are never seen in training or tuning."""
    contexts, attacks = load_indirect()
    ctx_by_id = {c.id: c for c in contexts}
    atk_by_id = {a.id: a for a in attacks}
    ctx_split = _cut(list(ctx_by_id), key=lambda i: i, stratum=lambda i: ctx_by_id[i].task)
    atk_split = _cut(list(atk_by_id), key=lambda i: i, stratum=lambda i: atk_by_id[i].category)
    ctx_out: dict[Split, list[Context]] = {"train": [], "tune": [], "test": []}
    atk_out: dict[Split, list[Attack]] = {"train": [], "tune": [], "test": []}
    for cid, split in ctx_split.items():
        ctx_out[split].append(ctx_by_id[cid])
    for aid, split in atk_split.items():
        atk_out[split].append(atk_by_id[aid])
    return ctx_out, atk_out


def plant(context: Context, attack: Attack | None, position: str) -> Document:
    """Insert ``attack`` into ``context`` at the start, the middle (at a line or word break) or
    the end, as BIPIA does."""
    text = context.text
    if attack is None:
        return Document(context, None, "clean", text, (0, 0))
    if position == "start":
        return Document(context, attack, position, f"{attack.text}\n{text}", (0, len(attack.text)))
    if position == "end":
        start = len(text) + 1
        return Document(
            context, attack, position, f"{text}\n{attack.text}", (start, start + len(attack.text))
        )
    if position != "middle":
        raise ValueError(f"unknown position {position!r}; use one of {POSITIONS}")
    half = len(text) // 2
    breaks = [m.start() for m in re.finditer(r"\n", text)] or [
        m.start() for m in re.finditer(r" ", text)
    ]
    cut = min(breaks, key=lambda b: abs(b - half)) if breaks else half
    start = cut + 1
    doc = f"{text[:cut]}\n{attack.text}\n{text[cut:].lstrip(chr(10))}"
    return Document(context, attack, position, doc, (start, start + len(attack.text)))


def documents(contexts: list[Context], attacks: list[Attack]) -> list[Document]:
    """Every context clean, plus every context with every attack at every position."""
    docs = [plant(c, None, "clean") for c in contexts]
    docs.extend(plant(c, a, p) for c in contexts for a in attacks for p in POSITIONS)
    return docs
