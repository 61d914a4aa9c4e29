"""Seed suites from the shared data formats: prompts/*.jsonl (attacks and benign queries) and
indirect/* (contexts with instructions inserted into them, the clean contexts as negatives).

Rows have an ``id``, the text, a ``label`` (``attack`` or ``benign``) and often a ``category``; a
benign row becomes a ``normal`` case expected allowed, an attack row an ``attack`` case expected
blocked. The decisions a row exercises come from the caller: the data does not know the charter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from charter.errors import InvalidRequest
from charter.evals.suite import Case, Category, ChatMessage, Expectation, Expected

POSITIONS = ("start", "middle", "end")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise InvalidRequest(f"{path} does not exist", hint="see /work/shared/data/README.md")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise InvalidRequest(
                        f"{path}:{number}: not valid JSON ({exc})", hint="one object per line"
                    ) from None


def _sample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def import_prompts(
    path: str | Path,
    *,
    decisions: Sequence[str],
    limit: int | None = None,
    seed: int = 0,
    blocked_by: str | None = None,
) -> list[Case]:
    """Cases from a prompts/*.jsonl file: attacks expected blocked, benign rows expected allowed.

    ``limit`` draws a reproducible sample (``seed``); ``blocked_by`` pins the control expected to
    stop the attacks.
    """
    file = Path(path)
    cases = []
    for row in _sample(list(_rows(file)), limit, seed):
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip() or label not in ("attack", "benign"):
            raise InvalidRequest(
                f"{file}: row {row.get('id')!r} has no text or a label other than attack/benign",
                hint="rows need `text` and `label: attack|benign`",
            )
        attack = label == "attack"
        messages = [ChatMessage(role="user", content=text)]
        if isinstance(row.get("system_prompt"), str) and row["system_prompt"].strip():
            messages.insert(0, ChatMessage(role="system", content=row["system_prompt"]))
        cases.append(
            Case(
                id=str(row["id"]),
                category=Category.ATTACK if attack else Category.NORMAL,
                decisions=list(decisions),
                messages=messages,
                expect=Expectation(
                    verdict=Expected.BLOCKED if attack else Expected.ALLOWED,
                    control=blocked_by if attack else None,
                ),
                tags=[f"source:{row.get('source', file.stem)}", str(row.get("category", ""))],
            )
        )
    return cases


def _insert(context: str, attack: str, position: str) -> str:
    if position == "start":
        return f"{attack}\n{context}"
    if position == "end":
        return f"{context}\n{attack}"
    middle = len(context) // 2
    cut = context.rfind(" ", 0, middle)
    cut = middle if cut == -1 else cut
    return f"{context[:cut]}\n{attack}\n{context[cut:]}"


def import_indirect(
    contexts_path: str | Path,
    attacks_path: str | Path,
    *,
    decisions: Sequence[str],
    limit: int = 50,
    seed: int = 0,
    blocked_by: str | None = None,
) -> list[Case]:
    """Indirect-injection cases: each context is a tool result (untrusted) answering the user's
    question; attack cases have an instruction inserted at the start, middle or end, and the clean
    context is a normal case of the same question."""
    rng = random.Random(seed)
    contexts = _sample(list(_rows(Path(contexts_path))), limit, seed)
    attacks = list(_rows(Path(attacks_path)))
    if not attacks:
        raise InvalidRequest(f"{attacks_path} has no attacks", hint="check the file")
    cases = []
    for row in contexts:
        question = str(row.get("question") or "Summarise this document.")
        context = str(row.get("context") or "")
        attack = rng.choice(attacks)
        position = rng.choice(POSITIONS)
        for is_attack in (False, True):
            document = _insert(context, str(attack["text"]), position) if is_attack else context
            cases.append(
                Case(
                    id=f"{row['id']}-{'attack-' + position if is_attack else 'clean'}",
                    category=Category.ATTACK if is_attack else Category.NORMAL,
                    decisions=list(decisions),
                    messages=[
                        ChatMessage(role="user", content=question),
                        ChatMessage(role="user", content=f"The document:\n{document}"),
                    ],
                    untrusted=[1],
                    expect=Expectation(
                        verdict=Expected.BLOCKED if is_attack else Expected.ALLOWED,
                        control=blocked_by if is_attack else None,
                    ),
                    tags=["source:microsoft/BIPIA", str(attack.get("category", ""))],
                )
            )
    return cases
