"""The `standard` control kind in the policy engine: banned phrasings, checked at the output stage.

This is the incremental half of a standard's output checks: the gateway's stream guard runs it on
the growing answer behind its hold-back window, so a banned phrasing is stopped before it leaves.
Required elements can only be judged on the whole answer, in ``Standards.finalize``.
"""

from __future__ import annotations

from typing import Any

from charter.document.model import Charter, StandardControl
from charter.document.source import Path
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage, Verdict
from charter.standards.library import (
    CACHE_SIZE,
    Standard,
    banned_verdict,
    compile_standards,
    resolve,
)


class StandardHandler:
    """Judges the banned phrasings of one standard on answers in its scope (and not replaced)."""

    def __init__(self, control: StandardControl, charter: Charter, runtime: Runtime) -> None:
        # Whether this standard is replaced depends on the others, so all are compiled here
        # (instruction files are not read: checks do not need them).
        self.all = compile_standards(charter)
        self.standard: Standard = next(s for s in self.all if s.id == control.id)
        # A standard with required elements registers at the output stage too, though only the
        # end of the answer judges them: so the gateway holds streams back for it at all.
        checks = self.standard.banned or self.standard.required
        self.stages = frozenset({Stage.OUTPUT}) if checks else frozenset()
        self._in_force: dict[tuple[tuple[str, ...], str | None], bool] = {}

    def in_force(self, principals: tuple[str, ...], model: str | None) -> bool:
        """Whether the standard applies to this caller and model."""
        key = (principals, model)
        found = self._in_force.get(key)
        if found is None:
            if len(self._in_force) >= CACHE_SIZE:
                self._in_force.clear()
            applied, _ = resolve(self.all, principals, model)
            found = self._in_force[key] = self.standard in applied
        return found

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        if ctx.stage is not Stage.OUTPUT or not self.in_force(ctx.principals, ctx.model):
            return None
        return banned_verdict(self.standard, ctx.text)


def _factory(control: Any, charter: Charter, runtime: Runtime) -> StandardHandler:
    return StandardHandler(control, charter, runtime)


def gaps(settings: Any) -> list[tuple[Path, str]]:
    """Nothing in a standard's settings is validated without being enforced."""
    return []


register("standard", _factory, gaps=gaps)
