"""Evals: suites as data, runs against the policy engine or the gateway, evidence gates, graders,
red-team variants and replay of recorded traffic.

The public API is listed here; everything else in the package is private to it.
"""

from charter.evals.gate import (
    GateResult,
    GateStatus,
    evaluate_gate,
    gate_status,
    record_override,
    record_run,
    require_enforceable,
)
from charter.evals.metrics import Rates, Summary, summarize
from charter.evals.runner import CaseResult, Run, run_gateway, run_policy
from charter.evals.suite import Case, Category, Expected, Suite, load_suite, parse_suite

__all__ = [
    "Case",
    "CaseResult",
    "Category",
    "Expected",
    "GateResult",
    "GateStatus",
    "Rates",
    "Run",
    "Suite",
    "Summary",
    "evaluate_gate",
    "gate_status",
    "load_suite",
    "parse_suite",
    "record_override",
    "record_run",
    "require_enforceable",
    "run_gateway",
    "run_policy",
    "summarize",
]
