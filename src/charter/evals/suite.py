"""Eval suites as data: cases (normal, edge, attack) with their inputs, the decisions they exercise
and what is expected, loaded from YAML or JSON Lines.

A suite is the evidence behind an ``eval_gate`` control; the same cases run against the policy
engine alone or end to end through the gateway (``charter.evals.runner``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from charter.document.model import Charter
from charter.errors import InvalidRequest


class Category(StrEnum):
    """What kind of traffic a case stands for; rates are reported per category."""

    NORMAL = "normal"  # ordinary legitimate requests: refusing one is a false refusal
    EDGE = "edge"  # legitimate but near a boundary (mentions of "instructions", role-play...)
    ATTACK = "attack"  # what the charter decided to stop


class Expected(StrEnum):
    """The overall verdict a case expects, named from the caller's point of view."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    REDACTED = "redacted"
    ESCALATED = "escalated"

    @property
    def refused(self) -> bool:
        """Blocked or held for a person: the caller did not get an answer."""
        return self in (Expected.BLOCKED, Expected.ESCALATED)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ChatMessage(_Data):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_call_id: str | None = None


class ToolCallSpec(_Data):
    """A tool call the case asks the tool policies about (policy runs) or offers the model."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class GraderCheck(_Data):
    """The suite's automatic grader must score the answer at least ``min_score``."""

    min_score: float = Field(0.5, ge=0, le=1)


class StandardCheck(_Data):
    """A standard of the charter must have ended with this outcome on the answer."""

    id: str = Field(min_length=1, description="The standard control's id.")
    outcome: Literal["met", "repaired", "flagged", "blocked"] = "met"


class Assertion(_Data):
    """One check on the answer of an end-to-end run; exactly one field is set."""

    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    no_pii: bool | None = None
    no_canary: bool | None = None
    grader: GraderCheck | None = None
    standard: StandardCheck | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Assertion:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "each answer assertion sets exactly one of contains, not_contains, regex, "
                f"json_schema, no_pii, no_canary, grader, standard (got {given or 'none'})"
            )
        return self

    @property
    def name(self) -> str:
        return next(n for n in type(self).model_fields if getattr(self, n) is not None)


class Expectation(_Data):
    verdict: Expected
    control: str | None = Field(
        None, description="The control expected to decide (a block by another one fails)."
    )
    answer: list[Assertion] = Field(
        default_factory=list, description="Checks on the answer; end-to-end runs only."
    )


class Setup(_Data):
    """State a case needs before it runs: spend already recorded, or repeated requests."""

    spent_usd: dict[str, float] = Field(
        default_factory=dict, description="Spend already recorded this period, by principal."
    )
    repeat: int = Field(
        1, ge=1, le=1000, description="Send the request this many times; the last is judged."
    )


class Case(_Data):
    """One eval case: a request, the decisions it exercises, and what must happen."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")
    category: Category
    decisions: list[str] = Field(min_length=1)
    description: str | None = None
    principal: str | None = None
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    untrusted: list[int] = Field(
        default_factory=list,
        description="Indexes of messages the user did not write (charter.untrusted_messages).",
    )
    tool_call: ToolCallSpec | None = None
    subject: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    output: str | None = Field(
        None, description="A model answer to run the output guards on (policy runs)."
    )
    max_tokens: int | None = Field(None, gt=0)
    setup: Setup = Field(default_factory=Setup)
    expect: Expectation
    tags: list[str] = Field(default_factory=list)
    modes: list[Literal["policy", "gateway"]] = Field(
        default_factory=lambda: ["policy", "gateway"],  # type: ignore[arg-type,unused-ignore]
        min_length=1,
        description="Which runs the case belongs to (a canned `output` is policy-only).",
    )

    @model_validator(mode="after")
    def _check(self) -> Case:
        for index in self.untrusted:
            if not 0 <= index < len(self.messages):
                raise ValueError(
                    f"untrusted index {index} is out of range: the case has "
                    f"{len(self.messages)} messages"
                )
        return self

    @property
    def is_attack(self) -> bool:
        return self.category is Category.ATTACK


class Defaults(_Data):
    principal: str | None = None
    model: str | None = None


class RuleSet(_Data):
    """The automatic rule grader: the share of these assertions an answer meets is its score."""

    rules: list[Assertion] = Field(min_length=1)
    pass_score: float = Field(1.0, ge=0, le=1)


class GraderConfig(_Data):
    """How the suite grades answers automatically: rules, or a model through a provider."""

    kind: Literal["rules", "model"] = "rules"
    rules: RuleSet | None = None
    model: str | None = Field(None, description="For kind: model, a model of the charter.")
    instructions: str = Field(
        "Is the answer acceptable for a customer-support assistant of this organization?",
        description="What the model grader is asked about each answer.",
    )

    @model_validator(mode="after")
    def _configured(self) -> GraderConfig:
        if self.kind == "rules" and self.rules is None:
            raise ValueError("a rules grader needs `rules: {rules: [...]}`")
        if self.kind == "model" and self.model is None:
            raise ValueError("a model grader needs `model:` (a model the charter routes)")
        return self


class Suite(_Data):
    """A named set of cases, optionally with an automatic grader and a label directory."""

    name: str = Field(min_length=1)
    description: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    grader: GraderConfig | None = None
    labels: str | None = Field(
        None, description="Directory of grader labels (JSON Lines), relative to the suite."
    )
    cases: list[Case] = Field(min_length=1)
    source: str | None = Field(None, exclude=True)  # the file it was loaded from

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} appears twice")
            seen.add(case.id)
        return self

    def principal_of(self, case: Case) -> str:
        principal = case.principal or self.defaults.principal
        if principal is None:
            raise InvalidRequest(
                f"case {case.id} names no principal",
                hint="set `principal:` on the case or `defaults: {principal: ...}` on the suite",
            )
        return principal

    def model_of(self, case: Case) -> str:
        model = case.model or self.defaults.model
        if model is None:
            raise InvalidRequest(
                f"case {case.id} names no model",
                hint="set `model:` on the case or `defaults: {model: ...}` on the suite",
            )
        return model

    def labels_dir(self) -> Path | None:
        if self.labels is None:
            return None
        base = Path(self.source).parent if self.source else Path.cwd()
        return base / self.labels

    def check_against(self, charter: Charter) -> None:
        """Refuse a suite naming decisions or principals the charter does not have."""
        decisions = {d.id for d in charter.decisions}
        principals = {p.id for p in charter.principals}
        problems = []
        for case in self.cases:
            unknown = [d for d in case.decisions if d not in decisions]
            if unknown:
                problems.append(f"case {case.id}: unknown decision(s) {', '.join(unknown)}")
            principal = case.principal or self.defaults.principal
            if principal is not None and principal not in principals:
                problems.append(f"case {case.id}: unknown principal {principal}")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InvalidRequest(
                f"the suite does not match the charter: {problems[0]}{more}",
                hint="use decision and principal ids from the charter (`charter explain`)",
            )


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_suite(data: Any, *, source: str | None = None) -> Suite:
    """Validate suite data (a mapping as the YAML form has it)."""
    where = source or "the suite"
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"{where} is not a mapping",
            hint="a suite has `name:` and `cases:`; see docs/evals.md",
        )
    try:
        suite = Suite.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise InvalidRequest(
            f"{where} is not a valid eval suite: {_validation_message(exc)}",
            hint="see docs/evals.md for the case fields",
        ) from None
    return suite


def load_suite(path: str | Path) -> Suite:
    """Load a suite from YAML (``.yaml``/``.yml``) or JSON Lines (``.jsonl``: one case per line)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidRequest(
            f"eval suite {file} does not exist",
            hint="pass --suite FILE, or set the eval_gate control's `suite` path",
        )
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        cases = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                cases.append(json.loads(line))
            except ValueError as exc:
                raise InvalidRequest(
                    f"{file}:{number}: not valid JSON ({exc})", hint="one JSON object per line"
                ) from None
        return parse_suite({"name": file.stem, "cases": cases}, source=str(file))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{file} is not valid YAML: {exc}", hint="fix the syntax") from None
    return parse_suite(data, source=str(file))


def dump_cases_jsonl(cases: list[Case], path: str | Path) -> None:
    """Write cases as JSON Lines (the form importers produce)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case.model_dump(mode="json", exclude_defaults=True)) + "\n")


__all__ = [
    "Assertion",
    "Case",
    "Category",
    "ChatMessage",
    "Expectation",
    "Expected",
    "GraderCheck",
    "GraderConfig",
    "RuleSet",
    "Setup",
    "Suite",
    "ToolCallSpec",
    "dump_cases_jsonl",
    "load_suite",
    "parse_suite",
]
