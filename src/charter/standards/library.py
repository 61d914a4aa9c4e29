"""The standards of one charter, compiled: which apply to a request, in what order of precedence,
the exact instructions they compose, and the checks of an answer against them.

``Standards`` is built once at start-up (instruction files are read then, never per request). The
gateway and ``charter explain --principal X --model Y`` both call ``Standards.compose``, so what
explain shows is exactly what a request carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from charter.document.model import (
    ORGANIZATION,
    BannedAction,
    BannedPhrasing,
    Charter,
    Mode,
    OnError,
    RequiredElement,
    StandardAction,
    StandardControl,
)
from charter.document.version import charter_version
from charter.policy.verdict import Action, Span, Stage, Verdict
from charter.standards.matching import (
    Matcher,
    find_all,
    normalize,
    pattern_matcher,
    phrase_matcher,
    read_fragment,
)

CACHE_SIZE = 4096
DEFAULT_REFUSAL = "I can't give that answer; a person from our team will follow up."

# Precedence: mandatory standards from the broadest owner down, then the caller's own system
# prompt, then the other standards from the narrowest owner up, so a team's default outranks the
# organization's default and the caller outranks both, but nobody outranks a mandatory standard.
_LEVEL = {"organization": 0, "team": 1, "app": 2}


@dataclass(frozen=True, slots=True)
class RequiredCheck:
    """A required element, compiled."""

    id: str
    text: str
    present: Matcher | None
    answer_tests: tuple[Matcher, ...]
    question_tests: tuple[Matcher, ...]
    conditional: bool
    action: StandardAction
    instruction: str
    message: str | None

    def applies(self, answer: str, question: str) -> bool:
        """Whether an answer to ``question`` must carry this element."""
        if not self.conditional:
            return True
        folded = answer.casefold()
        return any(t.search(answer, folded) for t in self.answer_tests) or any(
            t.search(question) for t in self.question_tests
        )

    def found_in(self, answer: str) -> bool:
        if self.present is not None:
            return self.present.search(answer)
        return normalize(self.text) in normalize(answer)


@dataclass(frozen=True, slots=True)
class BannedCheck:
    """A banned phrasing, compiled."""

    id: str
    matchers: tuple[Matcher, ...]
    action: BannedAction
    instruction: str | None
    message: str | None

    def hits(self, text: str) -> list[tuple[int, int]]:
        return find_all(self.matchers, text)


@dataclass(frozen=True, slots=True)
class Standard:
    """One `standard` control, compiled for matching and checking."""

    id: str
    decisions: tuple[str, ...]
    owner: str
    level: str  # organization, team or app
    mandatory: bool
    replaces: frozenset[str]
    principals: frozenset[str] | None  # None: every principal the owner covers
    models: frozenset[str] | None  # None: every model
    required: tuple[RequiredCheck, ...]
    banned: tuple[BannedCheck, ...]
    message: str | None
    mode: Mode
    on_error: OnError
    order: int  # position in the charter, the tie-break within a level

    def in_scope(self, principals: Sequence[str], model: str | None) -> bool:
        """Whether a request from ``principals`` (the caller and its app and team) to ``model``
        is in this standard's scope."""
        if self.owner != ORGANIZATION and self.owner not in principals:
            return False
        if self.principals is not None and not self.principals.intersection(principals):
            return False
        return self.models is None or model in self.models

    @property
    def enforced(self) -> bool:
        return self.mode is Mode.ENFORCE

    @property
    def precedence(self) -> tuple[int, int, int]:
        rank = _LEVEL[self.level]
        return (0, rank, self.order) if self.mandatory else (2, -rank, self.order)


def compile_standards(charter: Charter) -> tuple[Standard, ...]:
    """Every standard of the charter that is not ``mode: off``, in charter order."""
    kinds: dict[str, str] = {p.id: p.kind for p in charter.principals}
    out = []
    for order, control in enumerate(charter.controls):
        if isinstance(control, StandardControl) and control.mode is not Mode.OFF:
            out.append(_compile(control, order, kinds))
    return tuple(out)


def _compile(control: StandardControl, order: int, kinds: dict[str, str]) -> Standard:
    s = control.settings
    level = ORGANIZATION if s.owner == ORGANIZATION else kinds.get(s.owner, "team")
    principals = None if "*" in s.scope.principals else frozenset(s.scope.principals)
    models = None if "*" in s.scope.models else frozenset(s.scope.models)
    return Standard(
        id=control.id,
        decisions=tuple(control.serves),
        owner=s.owner,
        level=level if level in _LEVEL else "team",
        mandatory=s.mandatory,
        replaces=frozenset(s.replaces),
        principals=principals,
        models=models,
        required=tuple(_required(e, s.on_miss) for e in s.required),
        banned=tuple(_banned(b) for b in s.banned),
        message=s.message,
        mode=control.mode,
        on_error=control.on_error,
        order=order,
    )


def _required(element: RequiredElement, on_miss: StandardAction) -> RequiredCheck:
    when = element.when
    answer_tests: list[Matcher] = []
    question_tests: list[Matcher] = []
    if when is not None:
        for tests, phrases, pattern in (
            (answer_tests, when.answer_mentions, when.answer_pattern),
            (question_tests, when.question_mentions, when.question_pattern),
        ):
            tests += [m for m in (phrase_matcher(phrases), pattern_matcher(pattern)) if m]
    return RequiredCheck(
        id=element.id,
        text=element.text,
        present=pattern_matcher(element.present),
        answer_tests=tuple(answer_tests),
        question_tests=tuple(question_tests),
        conditional=when is not None,
        action=element.action or on_miss,
        instruction=element.instruction or _required_instruction(element),
        message=element.message,
    )


def _required_instruction(element: RequiredElement) -> str:
    when = element.when
    if when is None:
        condition = "End every answer with this line"
    elif when.description:
        condition = f"{when.description[0].upper()}{when.description[1:]}, end the answer with "
        condition += "this line"
    else:
        parts = []
        if when.answer_mentions:
            parts.append("the answer mentions " + _either(when.answer_mentions))
        if when.question_mentions:
            parts.append("the user's message mentions " + _either(when.question_mentions))
        condition = "When " + (" or ".join(parts) if parts else "it applies")
        condition += ", end the answer with this line"
    return f"{condition}, word for word: {element.text}"


def _either(phrases: Sequence[str]) -> str:
    quoted = [f'"{p}"' for p in phrases]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _banned(phrasing: BannedPhrasing) -> BannedCheck:
    matchers = [phrase_matcher(phrasing.phrases), pattern_matcher(phrasing.pattern)]
    instruction = phrasing.instruction
    if instruction is None and phrasing.phrases:
        listed = ", ".join(f'"{p}"' for p in phrasing.phrases)
        instruction = f"Never use these phrasings, or any with the same meaning: {listed}."
    return BannedCheck(
        id=phrasing.id,
        matchers=tuple(m for m in matchers if m is not None),
        action=phrasing.action,
        instruction=instruction,
        message=phrasing.message,
    )


def resolve(
    standards: Sequence[Standard], principals: Sequence[str], model: str | None
) -> tuple[tuple[Standard, ...], tuple[Standard, ...]]:
    """The standards that apply to a request, in precedence order, and those in scope that a
    narrower standard replaces for it."""
    matching = [s for s in standards if s.in_scope(principals, model)]
    replaced_ids = {r for s in matching for r in s.replaces}
    applied = sorted((s for s in matching if s.id not in replaced_ids), key=lambda s: s.precedence)
    replaced = tuple(s for s in matching if s.id in replaced_ids)
    return tuple(applied), replaced


# --- composing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppliedStandard:
    """A standard that shapes a request's instructions."""

    id: str
    owner: str
    level: str
    mandatory: bool
    decisions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ComposedInstructions:
    """The exact system instructions a request carries, and which standards made them.

    ``applied`` is in precedence order; the caller's own system prompt sits before
    ``applied[caller_at]``. ``shadow`` standards are in scope but only checked, never composed;
    ``replaced`` standards are in scope but replaced by a narrower one. With no standard applied,
    ``text`` is the caller's system prompt unchanged.
    """

    text: str
    caller_system: str
    applied: tuple[AppliedStandard, ...]
    caller_at: int
    shadow: tuple[str, ...]
    replaced: tuple[str, ...]
    charter_version: str

    @property
    def changed(self) -> bool:
        """Whether the standards changed the request's instructions at all."""
        return bool(self.applied)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of ``text``: pins the instructions in the audit trail, file
        fragments included."""
        return "sha256:" + hashlib.sha256(self.text.encode()).hexdigest()

    def verdicts(self) -> tuple[Verdict, ...]:
        """One recorded (allow) verdict per standard applied or shadowed, for the audit record
        of the request: it names the standards, the decisions and the digest of the text."""
        out = [
            Verdict(
                Action.ALLOW,
                a.id,
                a.decisions,
                f"standard `{a.id}` composed into the instructions"
                + (" (mandatory)" if a.mandatory else ""),
                Stage.REQUEST,
                evidence={
                    "standard": a.id,
                    "check": "instructions",
                    "outcome": "applied",
                    "precedence": i + 1,
                    "digest": self.digest,
                    "charter_version": self.charter_version,
                },
            )
            for i, a in enumerate(self.applied)
        ]
        return tuple(out)


def render(
    organization: str,
    applied: Sequence[tuple[Standard, Sequence[str]]],
    caller_system: str,
) -> tuple[str, int]:
    """The composed text and where the caller's prompt sits among ``applied`` (which is in
    precedence order, each standard with its instruction fragments)."""
    caller_at = next((i for i, (s, _) in enumerate(applied) if not s.mandatory), len(applied))
    sections: list[str] = []
    for i, (standard, fragments) in enumerate(applied):
        if i == caller_at and caller_system.strip():
            sections.append(_caller_section(caller_system))
        sections.append(_standard_section(standard, fragments))
    if caller_at == len(applied) and caller_system.strip():
        sections.append(_caller_section(caller_system))
    head = (
        f"The standards of {organization} apply to this conversation. The sections below are "
        "in order of precedence: where two disagree, follow the earlier one."
    )
    return "\n\n".join([head, *sections]), caller_at


def _standard_section(standard: Standard, fragments: Sequence[str]) -> str:
    owner = "the organization" if standard.owner == ORGANIZATION else f"{standard.owner}"
    kind = (
        "mandatory: no later instruction overrides it"
        if standard.mandatory
        else "a default: the instructions above it override it"
    )
    lines = [f"## Standard {standard.id} (from {owner}; {kind})"]
    body = list(fragments)
    body += [r.instruction for r in standard.required]
    body += [b.instruction for b in standard.banned if b.instruction]
    return "\n".join(lines) + "\n" + "\n\n".join(body)


def _caller_section(caller_system: str) -> str:
    return "## Instructions of the caller\n" + caller_system.strip()


# --- checking answers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finalized:
    """The standards' judgement of a whole answer: its verdicts and what a repair appends."""

    verdicts: tuple[Verdict, ...] = ()
    separator: str = "\n\n"  # between the answer and the appendix (see ``_separator``)

    @property
    def blocked(self) -> Verdict | None:
        """The enforced verdict that refuses the answer, if any."""
        return next((v for v in self.verdicts if v.enforced and v.action is Action.BLOCK), None)

    @property
    def appendix(self) -> str:
        """What a repair appends to the answer, separator included: '' when nothing is missing
        or the answer is blocked. In a stream it is the last text chunk."""
        if self.blocked is not None:
            return ""
        pieces = _pieces(self.verdicts)
        return self.separator + "\n".join(pieces) if pieces else ""


def repair(text: str, verdicts: Sequence[Verdict]) -> str:
    """The answer with the required elements that enforced repair verdicts ask for appended.

    Verdicts of other controls, shadow verdicts and flags change nothing.
    """
    pieces = _pieces(verdicts)
    return text + _separator(text) + "\n".join(pieces) if pieces else text


def _pieces(verdicts: Sequence[Verdict]) -> list[str]:
    return [
        piece
        for v in verdicts
        if v.enforced and v.evidence.get("check") == "answer"
        for piece in v.evidence.get("append", ())
        if isinstance(piece, str)
    ]


def _separator(text: str) -> str:
    """A blank line before the appended elements, without doubling one the answer ends with."""
    if not text or text.endswith("\n\n"):
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


def _banned_hits(standard: Standard, text: str) -> list[tuple[BannedCheck, int, int]]:
    return [(c, start, end) for c in standard.banned for start, end in c.hits(text)]


def banned_verdict(standard: Standard, text: str) -> Verdict | None:
    """The verdict on the banned phrasings in ``text``, which may be a stream's prefix.

    A match that touches the end of the text is left out: in a stream the next characters may
    change it ("refund" may become "refunded"), so it is judged once the whole answer is known,
    by ``answer_verdict``. None when the standard bans nothing.
    """
    if not standard.banned:
        return None
    hits = [h for h in _banned_hits(standard, text) if h[2] < len(text)]
    ids = sorted({c.id for c, _, _ in hits})
    evidence: dict[str, Any] = {"standard": standard.id, "check": "banned"}
    blocking = [c for c, _, _ in hits if c.action is BannedAction.BLOCK]
    if blocking:
        action = Action.BLOCK
        reason = f"the answer uses a banned phrasing ({', '.join(ids)})"
        evidence.update(
            outcome="blocked",
            message=blocking[0].message or standard.message or DEFAULT_REFUSAL,
        )
    elif hits:
        action = Action.ALLOW
        reason = f"the answer uses a banned phrasing ({', '.join(ids)}); flagged, not enforced"
        evidence["outcome"] = "flagged"
    else:
        action, reason = Action.ALLOW, "no banned phrasing"
        evidence["outcome"] = "met"
    if ids:
        evidence["phrasings"] = ids
    spans = tuple(Span(start, end, f"banned:{c.id}") for c, start, end in hits)
    return Verdict(
        action,
        standard.id,
        standard.decisions,
        reason,
        Stage.OUTPUT,
        spans=spans,
        evidence=evidence,
    )


def answer_verdict(standard: Standard, answer: str, question: str) -> Verdict | None:
    """The verdict on a whole answer: its required elements, and any banned phrasing at its
    very end (the one place ``banned_verdict`` cannot judge). None when there is nothing to
    judge."""
    due = [r for r in standard.required if r.applies(answer, question)]
    missing = [r for r in due if not r.found_in(answer)]
    tail = [h for h in _banned_hits(standard, answer) if h[2] >= len(answer)]
    if not standard.required and not tail:
        return None
    blocks = [r for r in missing if r.action is StandardAction.BLOCK]
    repairs = [r for r in missing if r.action is StandardAction.REPAIR]
    flags = [r for r in missing if r.action is StandardAction.FLAG]
    tail_blocks = [c for c, _, _ in tail if c.action is BannedAction.BLOCK]
    tail_ids = sorted({c.id for c, _, _ in tail})
    evidence: dict[str, Any] = {
        "standard": standard.id,
        "check": "answer",
        "due": [r.id for r in due],
        "missing": [r.id for r in missing],
    }
    if tail_ids:
        evidence["phrasings"] = tail_ids
    spans = tuple(Span(start, end, f"banned:{c.id}") for c, start, end in tail)
    if blocks or tail_blocks:
        message = (blocks[0].message if blocks else tail_blocks[0].message) or standard.message
        evidence.update(outcome="blocked", message=message or DEFAULT_REFUSAL)
        what = [f"{r.id} is missing" for r in blocks]
        what += [f"it uses a banned phrasing ({', '.join(tail_ids)})"] if tail_blocks else []
        reason = "the answer fails the standard: " + "; ".join(what)
        return Verdict(
            Action.BLOCK,
            standard.id,
            standard.decisions,
            reason,
            Stage.OUTPUT,
            spans=spans,
            evidence=evidence,
        )
    notes = []
    if repairs:
        evidence["append"] = [r.text for r in repairs]
        evidence["repaired"] = [r.id for r in repairs]
        notes.append("missing, appended: " + ", ".join(evidence["repaired"]))
    if flags or tail:
        evidence["flagged"] = [r.id for r in flags] + tail_ids
        notes.append("flagged, not enforced: " + ", ".join(evidence["flagged"]))
    evidence["outcome"] = "repaired" if repairs else "flagged" if notes else "met"
    if notes:
        reason = "; ".join(notes)
    elif due:
        reason = "required elements present: " + ", ".join(evidence["due"])
    else:
        reason = "no required element was due"
    return Verdict(
        Action.ALLOW,
        standard.id,
        standard.decisions,
        reason,
        Stage.OUTPUT,
        spans=spans,
        evidence=evidence,
    )


def error_verdict(standard: Standard, stage: Stage, exc: BaseException) -> Verdict:
    """A check that raised, judged by the control's ``on_error`` (as the engine does)."""
    fail_open = standard.on_error is OnError.FAIL_OPEN
    return Verdict(
        Action.ALLOW if fail_open else Action.BLOCK,
        standard.id,
        standard.decisions,
        f"control failed ({type(exc).__name__}: {exc}); "
        + ("fail_open: allowed" if fail_open else "fail_closed: blocked"),
        stage,
        evidence={
            "error": type(exc).__name__,
            "standard": standard.id,
            "check": "answer",
            "outcome": "error",
        },
    )


# --- the facade --------------------------------------------------------------------------------


@dataclass
class Standards:
    """The standards of one charter, ready for the request path.

    ``base_dir`` is the folder of the charter file; instruction files are read here, once.
    """

    charter: Charter
    base_dir: Path | None = None
    standards: tuple[Standard, ...] = field(init=False)
    version: str = field(init=False)
    _fragments: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _cache: dict[
        tuple[tuple[str, ...], str | None], tuple[tuple[Standard, ...], tuple[Standard, ...]]
    ] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir) if self.base_dir is not None else None
        self.standards = compile_standards(self.charter)
        self.version = charter_version(self.charter)
        controls = {c.id: c for c in self.charter.controls}
        self._fragments = {}
        for standard in self.standards:
            control = controls[standard.id]
            assert isinstance(control, StandardControl)
            self._fragments[standard.id] = tuple(
                read_fragment(self.base_dir, f) for f in control.settings.instructions
            )
        self._cache = {}

    def resolve(
        self, principals: Sequence[str], model: str | None
    ) -> tuple[tuple[Standard, ...], tuple[Standard, ...]]:
        """The standards in force for this caller and model (precedence order, shadow ones
        included) and the ones replaced for it; cached, since few combinations exist."""
        key = (tuple(principals), model)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            found = self._cache[key] = resolve(self.standards, principals, model)
        return found

    def compose(
        self, principals: Sequence[str], model: str | None, caller_system: str = ""
    ) -> ComposedInstructions:
        """The instructions a request from ``principals`` (the caller, then its app and team) to
        ``model`` carries, given the caller's own system prompt."""
        in_force, replaced = self.resolve(principals, model)
        applied = [s for s in in_force if s.enforced]
        shadow = tuple(s.id for s in in_force if not s.enforced)
        if not applied:
            text, caller_at = caller_system, 0
        else:
            text, caller_at = render(
                self.charter.organization,
                [(s, self._fragments[s.id]) for s in applied],
                caller_system,
            )
        return ComposedInstructions(
            text=text,
            caller_system=caller_system,
            applied=tuple(
                AppliedStandard(s.id, s.owner, s.level, s.mandatory, s.decisions) for s in applied
            ),
            caller_at=caller_at,
            shadow=shadow,
            replaced=tuple(s.id for s in replaced),
            charter_version=self.version,
        )

    def finalize(
        self, text: str, principals: Sequence[str], model: str | None, question: str = ""
    ) -> Finalized:
        """Judge a whole answer (streamed or not) against the standards in force: required
        elements, and banned phrasings at its very end. ``question`` is the user's last message
        (for conditions on it). An empty answer (tool calls only) is not judged."""
        if not text.strip():
            return Finalized()
        verdicts = []
        for standard in self.resolve(principals, model)[0]:
            try:
                verdict = answer_verdict(standard, text, question)
            except Exception as exc:  # a failing check is a verdict, decided by on_error
                verdict = error_verdict(standard, Stage.OUTPUT, exc)
            if verdict is None:
                continue
            if not standard.enforced:
                verdict = _shadowed(verdict)
            verdicts.append(verdict)
        return Finalized(tuple(verdicts), _separator(text))

    def holds_whole_answer(self, principals: Sequence[str], model: str | None) -> bool:
        """Whether a stream must be held until it ends: an enforced standard in force could
        block it for a missing required element, which is only known at the end."""
        return any(
            s.enforced and r.action is StandardAction.BLOCK
            for s in self.resolve(principals, model)[0]
            for r in s.required
        )


def _shadowed(verdict: Verdict) -> Verdict:
    return replace(verdict, enforced=False)
