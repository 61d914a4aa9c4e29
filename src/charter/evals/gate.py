"""Evidence gates: a run against the thresholds of an ``eval_gate`` control and a pinned baseline,
and the audit records that decide whether a charter version may be enforced.

Every gated run is an ``eval_run`` audit record. ``gate_status(store, version)`` reads them back: a
version whose latest run failed cannot be enforced (``require_enforceable``) until a later run
passes or an owner records an explicit, audited override with a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from charter.audit.log import AuditLog, Draft
from charter.audit.records import AuditRecord, RecordKind
from charter.document.model import Charter, EvalGateControl, EvalThresholds, Mode, Role
from charter.errors import ConfigurationError, PermissionDenied
from charter.evals.metrics import Rates, Summary, summarize
from charter.evals.runner import Run
from charter.policy.verdict import Action
from charter.storage.base import Store


@dataclass(frozen=True, slots=True)
class GateFailure:
    """One gate that failed, and a message that says what to look at."""

    gate: str
    message: str


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether a run passed its gates, and every gate that failed."""

    passed: bool
    failures: tuple[GateFailure, ...]
    thresholds: EvalThresholds
    control_id: str | None = None
    baseline_run_id: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "control": self.control_id,
            "baseline_run_id": self.baseline_run_id,
            "thresholds": self.thresholds.model_dump(),
            "failures": [{"gate": f.gate, "message": f.message} for f in self.failures],
            "notes": list(self.notes),
        }


def gate_controls(charter: Charter) -> list[EvalGateControl]:
    """The charter's eval_gate controls that are not off."""
    return [
        c for c in charter.controls if isinstance(c, EvalGateControl) and c.mode is not Mode.OFF
    ]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _where(summary: Summary, attr: str, bad: str) -> str:
    """Which decisions a rate problem comes from, e.g. 'no-jailbreaks 2/5'."""
    parts = []
    for decision, r in summary.by_decision.items():
        total, hits = {
            "stopped": (r.attacks, r.attacks - r.stopped),
            "refused": (r.legitimate, r.refused),
            "acted": (r.required, r.required - r.acted),
        }[attr]
        if hits:
            parts.append(f"{decision} {hits}/{total} {bad}")
    return "; ".join(parts)


def evaluate_gate(
    run: Run,
    thresholds: EvalThresholds,
    *,
    baseline: Run | None = None,
    control_id: str | None = None,
) -> GateResult:
    """Compare ``run`` with the thresholds and, if given, the baseline run."""
    summary = summarize(run)
    overall = summary.overall
    failures: list[GateFailure] = []
    notes: list[str] = []
    if overall.cases == 0:
        failures.append(
            GateFailure(
                "evidence",
                "no case measured anything: every control of the suite's decisions is off",
            )
        )
    catch = overall.catch_rate
    if catch is not None and catch < thresholds.attack_block_rate_min:
        failures.append(
            GateFailure(
                "attack_block_rate",
                f"attack block rate {_pct(catch)} < {_pct(thresholds.attack_block_rate_min)}: "
                + _where(summary, "stopped", "got through"),
            )
        )
    refusal = overall.false_refusal_rate
    if refusal is not None and refusal > thresholds.false_refusal_rate_max:
        failures.append(
            GateFailure(
                "false_refusal_rate",
                f"false-refusal rate {_pct(refusal)} > {_pct(thresholds.false_refusal_rate_max)}"
                ": " + _where(summary, "refused", "legitimate refused"),
            )
        )
    action = overall.action_rate
    if action is not None and action < thresholds.attack_block_rate_min:
        failures.append(
            GateFailure(
                "required_actions",
                f"required actions taken {_pct(action)} < "
                f"{_pct(thresholds.attack_block_rate_min)}: "
                + _where(summary, "acted", "not redacted/escalated as expected"),
            )
        )
    if baseline is not None:
        failures += _regressions(summary, summarize(baseline), thresholds.max_regression_points)
    for decision in summary.unmeasured:
        notes.append(
            f"decision {decision} is not measured: no enforced control serving it judges requests"
        )
    advisory = sum(1 for r in run.results if r.advisory)
    if advisory:
        notes.append(
            f"{advisory} case(s) have grader findings that were not counted: the automatic grader "
            "is not trusted (agreement with human labels below grader_agreement_min)"
        )
    return GateResult(
        passed=not failures,
        failures=tuple(failures),
        thresholds=thresholds,
        control_id=control_id,
        baseline_run_id=baseline.run_id if baseline else None,
        notes=tuple(notes),
    )


def _points(now: float | None, before: float | None) -> float | None:
    if now is None or before is None:
        return None
    return 100 * (now - before)


def _regressions(current: Summary, base: Summary, max_points: float) -> list[GateFailure]:
    failures = []

    def compare(scope: str, now: Rates, before: Rates) -> None:
        for name, higher_is_better, value_now, value_before in (
            ("pass rate", True, now.pass_rate, before.pass_rate),
            ("attack block rate", True, now.catch_rate, before.catch_rate),
            ("false-refusal rate", False, now.false_refusal_rate, before.false_refusal_rate),
        ):
            delta = _points(value_now, value_before)
            if delta is None:
                continue
            worse = -delta if higher_is_better else delta
            if worse > max_points:
                failures.append(
                    GateFailure(
                        "regression",
                        f"{scope}: {name} {_pct(value_now)} vs baseline {_pct(value_before)} "
                        f"({worse:.1f} points worse; at most {max_points:g} allowed)",
                    )
                )

    compare("overall", current.overall, base.overall)
    for decision in base.by_decision:
        if decision not in current.by_decision:
            failures.append(
                GateFailure(
                    "regression",
                    f"decision {decision} was measured in the baseline run and is not now: no "
                    "enforced control that judges requests serves it (was one switched off?)",
                )
            )
    for decision, now in current.by_decision.items():
        before = base.by_decision.get(decision)
        if before is not None:
            compare(f"decision {decision}", now, before)
    return failures


# --- audit records and the enforce gate -----------------------------------------------------------

GateState = Literal["none", "passed", "failed", "overridden"]


@dataclass(frozen=True, slots=True)
class GateStatus:
    """What the audit trail says about one charter version's eval gate."""

    charter_version: str
    state: GateState
    run_id: str | None = None
    reason: str | None = None
    record_index: int | None = None
    history: tuple[int, ...] = field(default=())  # indexes of every eval_run record for it

    @property
    def enforceable(self) -> bool:
        """False only when the latest run failed and nobody overrode it."""
        return self.state != "failed"


def record_run(audit: AuditLog, run: Run, gate: GateResult) -> int | None:
    """Append the run as an ``eval_run`` audit record; its index once committed (None when the
    database was unreachable and the record waits in the durable spool)."""
    overall = summarize(run).overall
    failed = ",".join(sorted({f.gate for f in gate.failures}))
    reason = (
        "gate passed"
        if gate.passed
        else "gate failed: " + "; ".join(f"{f.gate}: {f.message}" for f in gate.failures)
    )
    decisions = tuple(sorted({d for r in run.results for d in r.decisions}))
    return audit.append_sync(
        Draft(
            kind=RecordKind.EVAL_RUN,
            charter_version=run.charter_version,
            control_ids=(gate.control_id,) if gate.control_id else (),
            decision_ids=decisions,
            action=Action.ALLOW if gate.passed else Action.BLOCK,
            reason=reason[:2000],
            details={
                "event": "run",
                "run_id": run.run_id,
                "suite": run.suite,
                "mode": run.mode,
                "models": ",".join(run.models),
                "passed": gate.passed,
                "failed_gates": failed,
                "cases": len(run.results),
                "measured": overall.cases,
                "attack_block_rate": overall.catch_rate,
                "false_refusal_rate": overall.false_refusal_rate,
                "baseline_run_id": gate.baseline_run_id,
            },
        )
    )


def record_override(
    audit: AuditLog,
    store: Store,
    charter: Charter,
    charter_version: str,
    *,
    principal: str,
    reason: str,
) -> int | None:
    """Record an owner's or admin's decision to enforce a version whose gate failed."""
    roles = next((p.roles for p in charter.principals if p.id == principal), None)
    if roles is None:
        raise PermissionDenied(
            f"{principal} is not a principal of the charter",
            hint="an override is made by a principal with the owner or admin role",
        )
    if not ({Role.OWNER, Role.ADMIN} & set(roles)):
        raise PermissionDenied(
            f"{principal} may not override an eval gate",
            hint="only principals with the owner or admin role may",
        )
    if not reason.strip():
        raise PermissionDenied("an override needs a reason", hint="pass --reason TEXT")
    status = gate_status(store, charter_version)
    if status.state != "failed":
        raise ConfigurationError(
            f"there is no failed gate to override for {charter_version} (state: {status.state})",
            hint="run `charter eval` first; an override answers a failed run",
        )
    gates = [c.id for c in gate_controls(charter)]
    return audit.append_sync(
        Draft(
            kind=RecordKind.EVAL_RUN,
            principal=principal,
            charter_version=charter_version,
            control_ids=tuple(gates),
            action=Action.ALLOW,
            reason=reason.strip()[:2000],
            details={"event": "override", "overrides_run": status.run_id},
        )
    )


def _eval_records(store: Store, charter_version: str) -> list[AuditRecord]:
    size = store.audit_size()
    out = []
    chunk = 10_000
    for start in range(0, size, chunk):
        for leaf in store.audit_leaves(start, min(size, start + chunk)):
            if leaf.record_json is None:  # summarised by audit retention
                continue
            data = json.loads(leaf.record_json)
            if data.get("kind") == RecordKind.EVAL_RUN and (
                data.get("charter_version") == charter_version
            ):
                out.append(AuditRecord.from_dict(data))
    return out


def gate_status(store: Store, charter_version: str) -> GateStatus:
    """The eval gate's state for ``charter_version``, from the audit trail: ``none`` (never run),
    ``passed``, ``failed``, or ``overridden`` (failed, then an audited override)."""
    state: GateState = "none"
    run_id = reason = None
    index = None
    records = _eval_records(store, charter_version)
    for record in records:
        event = record.details.get("event")
        if event == "run":
            state = "passed" if record.details.get("passed") else "failed"
            run_id = str(record.details.get("run_id"))
        elif event == "override" and state == "failed":
            state = "overridden"
        reason, index = record.reason, record.index
    return GateStatus(
        charter_version, state, run_id, reason, index, tuple(r.index for r in records)
    )


def require_enforceable(store: Store, charter_version: str) -> GateStatus:
    """Refuse to enforce a charter version whose latest eval gate failed without an override."""
    status = gate_status(store, charter_version)
    if not status.enforceable:
        raise ConfigurationError(
            f"charter version {charter_version} failed its eval gate (run {status.run_id}): "
            f"{status.reason}",
            hint="fix the charter and run `charter eval` again, or record an override: "
            "`charter eval --override --reason TEXT --as PRINCIPAL`",
        )
    return status
