"""The one extension point for control kinds.

Each kind registers a factory that turns a control from the charter into a handler the engine calls.
Built-in kinds register exactly the way a plugin would; ``unimplemented`` reports controls whose
kind
or settings this version can validate but not enforce, so they are refused instead of ignored.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from charter.counters import Claim
from charter.document.model import Charter, Control
from charter.document.source import Path
from charter.policy.context import RequestContext
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage, Verdict


class Handler(Protocol):
    """A compiled control: built once at start-up, called on every request of its stages."""

    stages: frozenset[Stage]

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        """The verdict on ``ctx``, or None when the control does not apply to it."""
        ...


class ClaimSource(Protocol):
    """A stateful admission control (budget, rate limit): it says what a request must reserve,
    and the engine reserves the claims of every such control in one atomic step."""

    stages: frozenset[Stage]

    def claims(self, ctx: RequestContext) -> list[Claim]:
        """The amounts ``ctx`` needs under this control's limits (empty if none apply)."""
        ...


Factory = Callable[[Any, Charter, Runtime], Handler | ClaimSource]
Gaps = Callable[[Any], list[tuple[Path, str]]]


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    factory: Factory
    gaps: Gaps | None = None


_REGISTRY: dict[str, KindSpec] = {}

# Modules that register the built-in kinds; imported on first use so the document layer stays light.
BUILTIN_MODULES = (
    "charter.routes",
    "charter.budgets",
    "charter.limits",
    "charter.guards.control",
    "charter.audit.control",
    "charter.tools",
    "charter.approvals",
    "charter.evals.control",
    "charter.standards.control",
    "charter.monitors.control",
)
_loaded = False


def register(kind: str, factory: Factory, *, gaps: Gaps | None = None) -> None:
    """Register the handler factory of a control kind (``gaps`` lists unsupported settings)."""
    _REGISTRY[kind] = KindSpec(kind, factory, gaps)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def spec(kind: str) -> KindSpec | None:
    """The registered implementation of ``kind``, if any."""
    _load_builtins()
    return _REGISTRY.get(kind)


def implemented_kinds() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def unimplemented(control: Control) -> list[tuple[Path, str]]:
    """Where ``control`` asks for something this version cannot enforce, with a message each."""
    found = spec(control.kind)
    if found is None:
        return [(("kind",), f"control kind `{control.kind}` is not enforced by this version")]
    return found.gaps(control.settings) if found.gaps else []
