"""Expert judgment: graders' labels on answers, and automatic graders measured against them.

Graders are principals of the charter with the ``grader`` role. A label says whether one answer to
one request is acceptable, and why; labels are kept as JSON Lines in the suite's ``labels``
directory (one file per grader, append-only), become eval cases, and measure any automatic grader
(rules, or a model through a configured provider). An automatic grader whose agreement with the
labels is below the charter's ``grader_agreement_min`` is never counted as evidence for a gate.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from charter.document.model import Charter, Role
from charter.errors import InvalidRequest, PermissionDenied
from charter.evals.assertions import check
from charter.evals.suite import (
    Assertion,
    Case,
    Category,
    ChatMessage,
    Expectation,
    Expected,
    GraderCheck,
    GraderConfig,
)


@dataclass(frozen=True, slots=True)
class Label:
    """One grader's judgment of one answer."""

    case_id: str
    prompt: str
    answer: str
    acceptable: bool
    reason: str
    grader: str
    at: str
    category: str = "normal"
    decisions: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Label:
        try:
            return cls(**{**data, "decisions": tuple(data.get("decisions", ()))})
        except TypeError as exc:
            raise InvalidRequest(
                f"a label has the wrong fields ({exc})",
                hint="labels have case_id, prompt, answer, acceptable, reason, grader, at",
            ) from None


def _require_grader(charter: Charter, grader: str) -> None:
    for principal in charter.principals:
        if principal.id == grader:
            if Role.GRADER in principal.roles:
                return
            raise PermissionDenied(
                f"{grader} does not have the grader role",
                hint=f"add grader to the roles of principal {grader} in the charter",
            )
    raise PermissionDenied(
        f"{grader} is not a principal of the charter",
        hint="graders are principals with the grader role",
    )


def add_label(
    directory: Path,
    charter: Charter,
    *,
    case_id: str,
    prompt: str,
    answer: str,
    acceptable: bool,
    reason: str,
    grader: str,
    category: str = "normal",
    decisions: Sequence[str] = (),
) -> Label:
    """Record a grader's label; refused unless ``grader`` has the grader role and says why."""
    _require_grader(charter, grader)
    if not reason.strip():
        raise InvalidRequest(
            "a label needs a reason", hint="say why the answer is (not) acceptable"
        )
    if category not in {c.value for c in Category}:
        raise InvalidRequest(f"unknown category {category!r}", hint="normal, edge or attack")
    label = Label(
        case_id=case_id,
        prompt=prompt,
        answer=answer,
        acceptable=acceptable,
        reason=reason.strip(),
        grader=grader,
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        category=category,
        decisions=tuple(decisions),
    )
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{grader}.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(label.to_json() + "\n")
    return label


def load_labels(directory: Path | None) -> list[Label]:
    """Every label in ``directory`` (none if it does not exist)."""
    if directory is None or not directory.is_dir():
        return []
    out = []
    for file in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    out.append(Label.from_dict(json.loads(line)))
                except ValueError as exc:
                    raise InvalidRequest(
                        f"{file}:{number}: not valid JSON ({exc})", hint="one label per line"
                    ) from None
    return out


def labels_to_cases(labels: Sequence[Label], decisions: Sequence[str]) -> list[Case]:
    """Labels as eval cases: the labelled prompt, answered again, must satisfy the grader; an
    answer a grader rejected must not come back word for word. ``decisions`` stand in for labels
    that name none."""
    cases = []
    for n, label in enumerate(labels):
        answer: list[Assertion] = [Assertion(grader=GraderCheck(min_score=0.5))]
        if not label.acceptable and label.answer.strip():
            answer.append(Assertion(not_contains=label.answer.strip()))
        cases.append(
            Case(
                id=f"label-{label.grader}-{n}-{_slug(label.case_id)}",
                category=Category(label.category),
                decisions=list(label.decisions or decisions),
                description=f"labelled by {label.grader}: {label.reason}",
                messages=[ChatMessage(role="user", content=label.prompt)],
                expect=Expectation(verdict=Expected.ALLOWED, answer=answer),
                tags=["label"],
            )
        )
    return cases


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:60].strip("-") or "case"


class Grader(Protocol):
    """An automatic grader: a score in [0, 1] for an answer to a prompt (1 = acceptable)."""

    name: str
    pass_score: float

    async def score(self, prompt: str, answer: str) -> float:
        """How acceptable ``answer`` is."""
        ...


class RuleGrader:
    """Scores an answer by the share of the suite's rules it meets."""

    name = "rules"

    def __init__(self, rules: Sequence[Assertion], pass_score: float = 1.0) -> None:
        if any(r.grader is not None for r in rules):
            raise InvalidRequest(
                "a rule grader cannot use grader assertions", hint="use the other checks"
            )
        self.rules = list(rules)
        self.pass_score = pass_score

    async def score(self, prompt: str, answer: str) -> float:
        met = sum(check(rule, answer) is None for rule in self.rules)
        return met / len(self.rules)


_VERDICT = re.compile(r"\b(UNACCEPTABLE|ACCEPTABLE)\b")


class ModelGrader:
    """Asks a model of the charter whether an answer is acceptable; anything but a clear
    ``ACCEPTABLE`` scores 0, so a confused grader fails safe."""

    name = "model"
    pass_score = 0.5

    def __init__(self, client: Any, instructions: str) -> None:
        self.client = client  # a charter.providers.base.ProviderClient
        self.instructions = instructions

    async def score(self, prompt: str, answer: str) -> float:
        from charter.providers.types import ChatRequest, Message

        request = ChatRequest(
            model=str(getattr(self.client, "model", "") or "grader"),
            messages=(
                Message(
                    role="system",
                    content=f"{self.instructions} Reply with one word: ACCEPTABLE or UNACCEPTABLE.",
                ),
                Message(role="user", content=f"Request:\n{prompt}\n\nAnswer:\n{answer}"),
            ),
            max_tokens=8,
        )
        response = await self.client.generate(request)
        found = _VERDICT.search((response.content or "").upper())
        return 1.0 if found is not None and found.group(1) == "ACCEPTABLE" else 0.0


def build_grader(config: GraderConfig, charter: Charter) -> Grader:
    """The grader a suite configures (a model grader calls the charter's provider for it)."""
    if config.kind == "rules":
        assert config.rules is not None  # checked when the suite was loaded
        return RuleGrader(config.rules.rules, config.rules.pass_score)
    from charter.gateway.factory import build_models

    models = build_models(charter)
    if config.model not in models:
        raise InvalidRequest(
            f"the grader's model {config.model!r} is not a model of the charter",
            hint=f"use one of: {', '.join(models)}",
        )
    return ModelGrader(models[str(config.model)].client, config.instructions)


@dataclass(frozen=True, slots=True)
class Agreement:
    """How often an automatic grader agrees with the human labels."""

    grader: str
    labels: int
    agreed: int
    false_accepts: int  # humans said unacceptable, the grader passed it
    false_rejects: int

    @property
    def rate(self) -> float:
        return self.agreed / self.labels if self.labels else 0.0

    def trusted(self, minimum: float) -> bool:
        """Whether the grader may count as evidence: labels exist and agreement is high enough."""
        return self.labels > 0 and self.rate >= minimum

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 4)}


async def measure(grader: Grader, labels: Sequence[Label]) -> Agreement:
    """Grade every labelled answer and count agreements with the graders' labels."""
    agreed = false_accepts = false_rejects = 0
    for label in labels:
        passed = await grader.score(label.prompt, label.answer) >= grader.pass_score
        if passed == label.acceptable:
            agreed += 1
        elif passed:
            false_accepts += 1
        else:
            false_rejects += 1
    return Agreement(grader.name, len(labels), agreed, false_accepts, false_rejects)
