"""The `guard` control kind: a scanner, the content it looks at, and what a hit does.

The scanner gives a score in [0, 1]; the charter's ``threshold`` turns it into a hit and its
``escalate_band`` ([low, high)) sends uncertain scores to a human instead of a silent allow or
block. Scanners are built once, when the charter is compiled, never per request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from charter.document.model import Charter, GuardAction, GuardControl
from charter.document.source import Path
from charter.errors import ConfigurationError
from charter.guards.base import Scanner, ScanResult, reach_of
from charter.guards.output import (
    JsonSchemaScanner,
    LeakScanner,
    LengthScanner,
    UnicodeScanner,
    UrlScanner,
)
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Action, Stage, Verdict

DEFAULT_THRESHOLD = 0.5
_ACTIONS = {
    GuardAction.BLOCK: Action.BLOCK,
    GuardAction.REDACT: Action.REDACT,
    GuardAction.ESCALATE: Action.ESCALATE,
}


def _pii(settings: Any) -> Scanner:
    from charter.guards.pii import PIIScanner

    return PIIScanner(settings.entities)


def _topic(settings: Any) -> Scanner:
    from charter.guards.topic import TopicScanner

    return TopicScanner(settings.topics)


def _secrets(settings: Any) -> Scanner:
    from charter.guards.secrets import SecretsScanner

    return SecretsScanner()


def _leak(settings: Any, environ: Mapping[str, str] | None = None) -> Scanner:
    """The leak scanner with its protected values, read from the environment now (at build)."""
    from charter.guards.protected import ProtectedValue, ShortValue

    environ = os.environ if environ is None else environ
    values: list[ProtectedValue] = []
    for entry in settings.protect:
        value = environ.get(entry.env)
        if not value:
            raise ConfigurationError(
                f"leak guard: protect reads a value from ${entry.env}, which is not set",
                hint=f"export {entry.env}=... before starting Charter (the value stays out of "
                "the charter file), or remove the entry",
            )
        try:
            values.append(ProtectedValue.build(value, f"${entry.env}"))
        except ShortValue as exc:
            raise ConfigurationError(
                f"leak guard: the value of {exc}",
                hint=f"protect a longer value in ${entry.env}, or remove the entry",
            ) from None
    for number, phrase in enumerate(settings.phrases, 1):
        values.append(ProtectedValue.build(phrase, f"phrase {number}"))
    return LeakScanner(settings.min_overlap_chars, protected=values)


class StagedInjection:
    """The injection detector, with the variant trained for each kind of content: ``direct`` for
    what the user wrote, ``untrusted`` for documents and tool results (see its model card)."""

    name = "injection"
    reach = 512  # a window of the detector (``injection.WINDOW``)

    def __init__(self, stages: list[str]) -> None:
        from charter.guards.injection import InjectionScanner

        self.by_stage = {
            Stage(stage): InjectionScanner("untrusted" if stage == "untrusted" else "direct")
            for stage in stages
        }

    def threshold_for(self, stage: Stage) -> float:
        return float(self.by_stage[stage].threshold)

    def scan_at(self, stage: Stage, text: str) -> ScanResult:
        return self.by_stage[stage].scan(text)

    def scan(self, text: str) -> ScanResult:
        return next(iter(self.by_stage.values())).scan(text)


SCANNERS: dict[str, Callable[[Any], Scanner]] = {
    "injection": lambda s: StagedInjection(list(s.stages)),
    "pii": _pii,
    "secrets": _secrets,
    "topic": _topic,
    "unicode": lambda s: UnicodeScanner(),
    "length": lambda s: LengthScanner(s.max_chars),
    "urls": lambda s: UrlScanner(s.allow_domains),
    "json_schema": lambda s: JsonSchemaScanner(s.json_schema),
    "leak": _leak,
}
# Scanners whose hits have spans that can be cut out of the text.
REDACTABLE = frozenset({"pii", "secrets", "unicode", "urls"})
# Scanners that only make sense on answers.
OUTPUT_ONLY = frozenset({"length", "json_schema", "leak", "urls"})


def gaps(settings: Any) -> list[tuple[Path, str]]:
    """Guard settings this version cannot enforce."""
    out: list[tuple[Path, str]] = []
    if settings.scanner not in SCANNERS:
        out.append((("settings", "scanner"), f"scanner `{settings.scanner}` is not available yet"))
    if settings.action is GuardAction.REDACT and settings.scanner not in REDACTABLE:
        out.append(
            (
                ("settings", "action"),
                f"scanner `{settings.scanner}` finds no spans to redact; use block or escalate",
            )
        )
    if settings.scanner in OUTPUT_ONLY and set(settings.stages) != {"output"}:
        out.append(
            (
                ("settings", "stages"),
                f"scanner `{settings.scanner}` checks answers: set `stages: [output]`",
            )
        )
    return out


class GuardHandler:
    """Runs one scanner on the content of its stages and turns the score into a verdict."""

    def __init__(self, control: GuardControl, charter: Charter, runtime: Runtime) -> None:
        settings = control.settings
        self.control = control
        self.settings = settings
        self.decisions = tuple(control.serves)
        self.stages = frozenset(Stage(s) for s in settings.stages)
        self.scanner = SCANNERS[settings.scanner](settings)
        self.reach = reach_of(self.scanner)  # how far back a stream's step must look (or all)
        self.threshold = (
            settings.threshold
            if settings.threshold is not None
            else getattr(self.scanner, "threshold", DEFAULT_THRESHOLD)
        )
        self.hit_action = _ACTIONS[settings.action]

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        if not ctx.text:
            return None
        result = self._scan(ctx)
        threshold = self._threshold(ctx.stage)
        band = self.settings.escalate_band
        if band is not None and band[0] <= result.score < band[1]:
            action, why = Action.ESCALATE, "uncertain: sent to a human"
        elif result.score >= threshold:
            action, why = self.hit_action, "hit"
        else:
            action, why = Action.ALLOW, "clean"
        detail = f": {result.detail}" if result.detail else ""
        return Verdict(
            action=action,
            control_id=self.control.id,
            decision_ids=self.decisions,
            reason=f"{self.settings.scanner} {why} (score {result.score:.2f}, threshold "
            f"{threshold:.2f}){detail}",
            stage=ctx.stage,
            score=result.score,
            spans=result.spans if action is not Action.ALLOW else (),
            evidence={
                "kind": "guard",
                "scanner": self.settings.scanner,
                "message": self.settings.message,
            },
        )

    def _threshold(self, stage: Stage) -> float:
        if self.settings.threshold is None and isinstance(self.scanner, StagedInjection):
            return self.scanner.threshold_for(stage)  # tuned per variant on held-out data
        return float(self.threshold)

    def _scan(self, ctx: RequestContext) -> ScanResult:
        text, offset = ctx.text, 0
        if ctx.scan_from > 0 and (reach := self.reach) is not None:
            # A stream's answer so far: what lies before ``scan_from`` was judged at an earlier
            # step, so a scanner with local hits looks only from ``reach`` before it.
            offset = max(0, ctx.scan_from - reach)
            text = text[offset:]
        if isinstance(self.scanner, StagedInjection):
            result = self.scanner.scan_at(ctx.stage, text)
        elif isinstance(self.scanner, LeakScanner):
            canary = ctx.attributes.get("canary")
            result = self.scanner.scan_leak(
                text, ctx.system_prompt, canary if isinstance(canary, str) else None
            )
        else:
            result = self.scanner.scan(text)
        return result.shifted(offset)


register("guard", GuardHandler, gaps=lambda settings: gaps(settings))
