"""`charter check` for topic guards: what a single topic's schema cannot see.

A phrase listed both as an example (refused) and as an allowed example contradicts itself, two
topics of one guard with the same name are ambiguous in verdicts and drift statistics, and a
phrase listed twice in one list is a slip. The checks read the raw parsed data, so every problem
keeps the line and column of the phrase at fault; the loader reports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from charter.document.source import Path


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a topic guard, at ``path`` in the charter data."""

    path: Path
    code: str
    message: str
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _topic_guards(data: Any) -> Iterator[tuple[int, list[Any]]]:
    controls = data.get("controls") if isinstance(data, dict) else None
    for index, control in enumerate(controls if isinstance(controls, list) else []):
        if not isinstance(control, dict) or control.get("kind") != "guard":
            continue
        settings = control.get("settings")
        if not isinstance(settings, dict) or settings.get("scanner") != "topic":
            continue
        topics = settings.get("topics")
        if isinstance(topics, list):
            yield index, topics


def _phrases(topic: Any, key: str) -> Iterator[tuple[int, str]]:
    values = topic.get(key) if isinstance(topic, dict) else None
    for i, value in enumerate(values if isinstance(values, list) else []):
        if isinstance(value, str) and value.strip():
            yield i, value


def check_topics(data: Any) -> list[Problem]:
    """Every contradiction and duplicate among the topics of each topic guard in ``data``."""
    problems: list[Problem] = []
    for index, topics in _topic_guards(data):
        base: Path = ("controls", index, "settings", "topics")
        names: dict[str, int] = {}
        refused: dict[str, tuple[int, str]] = {}  # phrase -> (topic index, topic name)
        for t, topic in enumerate(topics):
            if not isinstance(topic, dict):
                continue
            name = str(topic.get("name", f"#{t}"))
            if name in names:
                problems.append(
                    Problem(
                        (*base, t, "name"),
                        "duplicate-id",
                        f"topic `{name}` is already defined in topics[{names[name]}] of this guard",
                        "give each topic its own name, or merge their examples into one",
                    )
                )
            names.setdefault(name, t)
            for key in ("examples", "allowed_examples"):
                seen: set[str] = set()
                for i, phrase in _phrases(topic, key):
                    if _norm(phrase) in seen:
                        problems.append(
                            Problem(
                                (*base, t, key, i),
                                "duplicate-example",
                                f"`{phrase}` is listed twice in {key} of topic `{name}`",
                                "remove one of them",
                                "warning",
                            )
                        )
                    seen.add(_norm(phrase))
            for _, phrase in _phrases(topic, "examples"):
                refused.setdefault(_norm(phrase), (t, name))
        for t, topic in enumerate(topics):
            for i, phrase in _phrases(topic, "allowed_examples"):
                clash = refused.get(_norm(phrase))
                if clash is None:
                    continue
                problems.append(
                    Problem(
                        (*base, t, "allowed_examples", i),
                        "conflicting-example",
                        f"`{phrase}` is an allowed example here and an example of topic "
                        f"`{clash[1]}` (topics[{clash[0]}].examples): the guard cannot both refuse "
                        "and allow it",
                        "keep it in one list: examples are refused, allowed_examples are answered",
                    )
                )
    return problems
