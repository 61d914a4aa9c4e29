"""The topic guard's support-desk measurement set: templates expanded into rows, split by template.

``data/support_templates.yaml`` holds requests for legal and medical advice and ordinary support
questions that mention law, health or money, written for Charter. Each template is filled up to
``FILLS`` times from its slot lists; the split is by template (``bucket("template:" + text)``), so
no test row shares its phrasing with a dev row, and the example charter's examples and
counter-examples come from dev rows only (a test in ``tests/guards/test_topic.py`` checks it).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "support_templates.yaml"
FILLS = 3
DEV_BUCKETS = 40
"""Templates with ``bucket < 40`` are dev (the charter may take examples from them); others test."""

ADVICE = ("legal-advice", "medical-advice")
BENIGN = ("benign-legal", "benign-medical", "benign-financial")


def bucket(text: str) -> int:
    """A stable 0-99 bucket per text (the same function as ``train_topic.bucket``)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100


@dataclass(frozen=True)
class Row:
    text: str
    label: str  # one of ADVICE or BENIGN
    template: str
    split: str  # "dev" or "test"


def _slots(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _fillings(template: str, slots: dict[str, list[str]]) -> list[dict[str, str]]:
    names = sorted(set(_slots(template)))
    if not names:
        return [{}]
    rng = random.Random(bucket("fill:" + template) * 7919 + len(template))
    out: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    for _ in range(FILLS * 10):
        choice = {n: rng.choice(slots[n]) for n in names}
        key = tuple(choice[n] for n in names)
        if key not in seen:
            seen.add(key)
            out.append(choice)
        if len(out) == FILLS:
            break
    return out


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def load_rows(path: Path = DATA) -> list[Row]:
    """Every row of the measurement set, in file order."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(path.read_text())
    slots: dict[str, list[str]] = {k: [str(v) for v in vs] for k, vs in data["slots"].items()}
    rows: list[Row] = []
    seen: set[str] = set()
    for label, templates in data["templates"].items():
        if label not in ADVICE + BENIGN:
            raise ValueError(f"{path}: unknown label {label!r}")
        for template in templates:
            unknown = set(_slots(template)) - set(slots)
            if unknown:
                raise ValueError(f"{path}: template {template!r} uses unknown slots {unknown}")
            split = "dev" if bucket("template:" + template) < DEV_BUCKETS else "test"
            for filling in _fillings(template, slots):
                text = _capitalise(re.sub(r"\s+", " ", template.format(**filling)).strip())
                if text not in seen:
                    seen.add(text)
                    rows.append(Row(text, label, template, split))
    return rows


def texts(rows: list[Row], label: str, split: str) -> list[str]:
    return [r.text for r in rows if r.label == label and r.split == split]


if __name__ == "__main__":
    from collections import Counter

    all_rows = load_rows()
    print(Counter((r.label, r.split) for r in all_rows))
    print(
        Counter(
            (r.label, r.split)
            for r in {(r.template, r.label, r.split): r for r in all_rows}.values()
        )
    )
