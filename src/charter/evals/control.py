"""The `eval_gate` control kind: the suite a charter version must pass before it is enforced.

It judges no request; `charter eval` reads its suite, baseline and thresholds, and the audit trail
records each gated run (``charter.evals.gate``).
"""

from __future__ import annotations

from typing import Any

from charter.document.model import Charter, EvalGateControl
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage


class EvalGate:
    """Registered so a charter can enforce an eval gate; it runs at no stage of a request."""

    stages: frozenset[Stage] = frozenset()

    def __init__(self, control: EvalGateControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.settings = control.settings

    def evaluate(self, ctx: Any) -> None:
        return None


register("eval_gate", EvalGate)
