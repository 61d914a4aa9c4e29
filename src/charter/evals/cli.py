"""`charter eval`, `charter redteam`, `charter replay` and `charter grade`: thin commands over
``charter.evals``. Register them on the main group with ``register(main)``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from charter.document.loader import load_charter
from charter.document.model import Charter, EvalGateControl, EvalThresholds
from charter.errors import InvalidRequest
from charter.evals.runner import CaseResult, Run
from charter.evals.suite import Case, Suite, load_suite
from charter.options import setting_option as _option
from charter.settings import resolve

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_GATE_FAILED = 1


def _charter(path: str) -> Charter:
    return load_charter(path).require()


def _gate(charter: Charter) -> EvalGateControl | None:
    from charter.evals.gate import gate_controls

    gates = gate_controls(charter)
    return gates[0] if gates else None


def _relative(charter_path: str, path: str) -> Path:
    return Path(charter_path).parent / path


def _suite(charter_path: str, charter: Charter, given: str | None) -> Suite:
    if given:
        return load_suite(given)
    gate = _gate(charter)
    if gate is None:
        raise InvalidRequest(
            "no suite given and the charter has no eval_gate control",
            hint="pass --suite FILE, or add an eval_gate control with `suite:` to the charter",
        )
    return load_suite(_relative(charter_path, gate.settings.suite))


@contextmanager
def _store(flags: dict[str, Any]) -> Any:
    from charter.gateway.factory import _ensure_sqlite_dir
    from charter.storage import open_store

    settings = resolve(flags)
    _ensure_sqlite_dir(settings.database)
    store = open_store(settings.database)
    try:
        store.migrate()
        yield store, settings
    finally:
        store.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def run_suite(
    charter_path: str,
    suite: Suite,
    *,
    mode: str,
    concurrency: int,
    cases: Sequence[Case] | None = None,
    grader: Any = None,
    grader_trusted: bool = False,
    show_progress: bool = True,
) -> Run:
    """Run a suite with a progress bar on stderr."""
    from charter.evals.runner import run_gateway, run_policy

    chosen = list(cases or suite.cases)
    with _progress() as progress:
        task = progress.add_task(f"{suite.name} ({mode})", total=len(chosen))

        def advance(_: CaseResult) -> None:
            progress.advance(task)

        tick = advance if show_progress else None
        if mode == "policy":
            return asyncio.run(
                run_policy(_charter(charter_path), suite, cases=chosen, progress=tick)
            )
        return asyncio.run(
            run_gateway(
                charter_path,
                suite,
                cases=chosen,
                concurrency=concurrency,
                grader=grader,
                grader_trusted=grader_trusted,
                progress=tick,
            )
        )


# --- charter eval ---------------------------------------------------------------------------------


@click.command("eval")
@click.option("--suite", default=None, help="The suite (default: the eval_gate control's).")
@click.option(
    "--mode",
    type=click.Choice(["policy", "gateway"]),
    default="policy",
    show_default=True,
    help="policy: the engine alone, no model; gateway: end to end through the gateway.",
)
@click.option("--concurrency", default=4, show_default=True, help="Cases in flight (gateway).")
@click.option("--baseline", default=None, help="A pinned run (JSON) to compare with.")
@click.option("--no-baseline", is_flag=True, help="Ignore the eval_gate control's baseline.")
@click.option("--json", "json_out", default=None, help="Write the run as JSON (a baseline).")
@click.option("--junit", default=None, help="Write JUnit XML for CI.")
@click.option("--html", "html_out", default=None, help="Write the HTML report with charts.")
@click.option("--record", is_flag=True, help="Record the run in the audit trail (--database).")
@click.option("--status", is_flag=True, help="Show the gate state of this charter version.")
@click.option("--override", is_flag=True, help="Record an audited override of a failed gate.")
@click.option("--reason", default="", help="Why the override (with --override).")
@click.option("--as", "principal", default=None, help="Who overrides (owner or admin role).")
@_option("charter")
@_option("database")
@_option("data_dir")
def eval_command(
    suite: str | None,
    mode: str,
    concurrency: int,
    baseline: str | None,
    no_baseline: bool,
    json_out: str | None,
    junit: str | None,
    html_out: str | None,
    record: bool,
    status: bool,
    override: bool,
    reason: str,
    principal: str | None,
    **flags: Any,
) -> None:
    """Run an eval suite and check its gate; exits 1 naming each gate that failed.

    \b
    Examples:
      charter eval --charter examples/support-desk/charter.yaml
      charter eval --charter examples/support-desk/charter.yaml --mode gateway \\
        --junit eval.xml --html eval.html --json eval.json
      charter eval --charter c.yaml --record --database sqlite:///charter.db
      charter eval --charter c.yaml --override --reason "accepted by the CISO" --as alice
    """
    from charter.document.version import charter_version
    from charter.evals import report
    from charter.evals.gate import evaluate_gate, gate_status

    charter_path = resolve(flags).charter
    charter = _charter(charter_path)
    version = charter_version(charter)
    if status or override:
        with _store(flags) as (store, settings):
            if override:
                _override(store, settings, charter, version, principal, reason)
            state = gate_status(store, version)
        console.print(f"eval gate of {version}: [bold]{state.state}[/] ({state.reason or '-'})")
        return
    gate_control = _gate(charter)
    thresholds = gate_control.settings.thresholds if gate_control else EvalThresholds()
    the_suite = _suite(charter_path, charter, suite)
    grader, agreement, label_cases = _grading(charter, the_suite, thresholds, gate_control)
    trusted = agreement is not None and agreement.trusted(thresholds.grader_agreement_min)
    run = run_suite(
        charter_path,
        the_suite,
        mode=mode,
        concurrency=concurrency,
        cases=[*the_suite.cases, *label_cases],
        grader=grader,
        grader_trusted=trusted,
    )
    if agreement is not None:
        run = _with_grader(run, agreement.to_dict(), trusted, thresholds)
    pinned = None
    if baseline:
        pinned = report.load_run(baseline)
    elif gate_control and gate_control.settings.baseline and not no_baseline:
        path = _relative(charter_path, gate_control.settings.baseline)
        if path.is_file():
            pinned = report.load_run(path)
        else:
            err.print(f"[dim]note:[/] no baseline at {path} yet; write one with --json {path}")
    if pinned is not None and pinned.mode != run.mode:
        err.print(f"[dim]note:[/] the baseline is a {pinned.mode} run; not compared")
        pinned = None
    gate = evaluate_gate(
        run, thresholds, baseline=pinned, control_id=gate_control.id if gate_control else None
    )
    report.print_summary(console, run, gate)
    if json_out:
        report.write_json(run, json_out, gate)
    if junit:
        Path(junit).write_text(report.junit_xml(run, gate), encoding="utf-8")
    if html_out:
        Path(html_out).write_text(report.html_report(run, gate, pinned), encoding="utf-8")
    if record:
        _record(flags, run, gate)
    if not gate.passed:
        names = ", ".join(dict.fromkeys(f.gate for f in gate.failures))
        err.print(f"[bold red]eval gate failed:[/] {names}")
        sys.exit(EXIT_GATE_FAILED)


def _with_grader(
    run: Run, agreement: dict[str, Any], trusted: bool, thresholds: EvalThresholds
) -> Run:
    from dataclasses import replace

    info = {**agreement, "trusted": trusted, "minimum": thresholds.grader_agreement_min}
    return replace(run, grader=info)


def _grading(
    charter: Charter,
    suite: Suite,
    thresholds: EvalThresholds,
    gate_control: EvalGateControl | None,
) -> tuple[Any, Any, list[Case]]:
    from charter.evals.grading import build_grader, labels_to_cases, load_labels, measure

    labels = load_labels(suite.labels_dir())
    decisions = list(gate_control.serves) if gate_control else [charter.decisions[0].id]
    label_cases = labels_to_cases(labels, decisions)
    if suite.grader is None:
        return None, None, label_cases
    grader = build_grader(suite.grader, charter)
    agreement = asyncio.run(measure(grader, labels))
    console.print(
        f"grader {grader.name}: agrees with {agreement.agreed}/{agreement.labels} human labels "
        f"({100 * agreement.rate:.1f}%; counted as evidence at "
        f"{100 * thresholds.grader_agreement_min:.0f}% or more)"
    )
    return grader, agreement, label_cases


def _record(flags: dict[str, Any], run: Run, gate: Any) -> None:
    from charter.audit.log import AuditLog, open_keys
    from charter.evals.gate import record_run

    with _store(flags) as (store, settings):
        audit = AuditLog(store, open_keys(settings.data_dir))
        try:
            index = record_run(audit, run, gate)
        finally:
            audit.close()
    console.print(f"recorded as audit record {index}")


def _override(
    store: Any,
    settings: Any,
    charter: Charter,
    version: str,
    principal: str | None,
    reason: str,
) -> None:
    from charter.audit.log import AuditLog, open_keys
    from charter.evals.gate import record_override

    if principal is None or not reason.strip():
        raise InvalidRequest(
            "an override needs who and why", hint="pass --as PRINCIPAL and --reason TEXT"
        )
    audit = AuditLog(store, open_keys(settings.data_dir))
    try:
        index = record_override(audit, store, charter, version, principal=principal, reason=reason)
    finally:
        audit.close()
    console.print(f"override by {principal} recorded as audit record {index}")


# --- charter redteam ------------------------------------------------------------------------------


@click.command("redteam")
@click.option("--suite", default=None, help="Seed attacks (default: the eval_gate's suite).")
@click.option("--transform", "transforms", multiple=True, help="Only these transforms.")
@click.option("--no-gaming", is_flag=True, help="Leave out the specification-gaming cases.")
@click.option("--mode", type=click.Choice(["policy", "gateway"]), default="policy")
@click.option("--concurrency", default=4, show_default=True)
@click.option("--json", "json_out", default=None, help="Write the variants' results as JSON.")
@click.option("--show", default=10, show_default=True, help="List this many that got through.")
@_option("charter")
def redteam_command(
    suite: str | None,
    transforms: tuple[str, ...],
    no_gaming: bool,
    mode: str,
    concurrency: int,
    json_out: str | None,
    show: int,
    **flags: Any,
) -> None:
    """Expand the suite's attacks into variants (encodings, framings, splitting, many-shot,
    multi-turn) plus specification-gaming cases, run them, and report which got through.

    \b
    Example:
      charter redteam --charter examples/support-desk/charter.yaml --json redteam.json
    """
    from charter.evals.redteam import TRANSFORMS, by_transform, expand, gaming_cases, got_through

    charter_path = resolve(flags).charter
    charter = _charter(charter_path)
    seeds = _suite(charter_path, charter, suite)
    cases = expand(seeds.cases, transforms or TRANSFORMS)
    if not no_gaming:
        cases += gaming_cases(charter, seeds.defaults.principal)
    if not cases:
        raise InvalidRequest("the suite has no attack cases to expand", hint="add attack cases")
    variants = seeds.model_copy(update={"name": f"{seeds.name}-redteam", "cases": cases})
    run = run_suite(charter_path, variants, mode=mode, concurrency=concurrency)
    table = Table(title="variants that got through", title_justify="left")
    for column in ("transform", "variants", "got through", "rate"):
        table.add_column(column, justify="right" if column != "transform" else "left")
    for row in by_transform(run):
        colour = "red" if row.through else "green"
        table.add_row(
            row.transform,
            str(row.variants),
            f"[{colour}]{row.through}[/]",
            f"{100 * row.through_rate:.0f}%",
        )
    console.print(table)
    through = [r for r in run.results if got_through(r)]
    for r in through[:show]:
        console.print(f"[red]through:[/] {escape(r.case_id)} ({'; '.join(r.failures)})")
    unmeasured = sum(not r.measured for r in run.results)
    if unmeasured:
        console.print(f"[dim]{unmeasured} variants of decisions no enforced control judges[/]")
    if json_out:
        Path(json_out).write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")


# --- charter replay -------------------------------------------------------------------------------


def _when(text: str, *, end: bool) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{text!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if end and len(text) == 10:
        value += dt.timedelta(days=1)  # --to 2025-01-31 includes that whole day
    return value


@click.command("replay")
@click.option("--from", "start", required=True, help="Start (UTC date or date-time).")
@click.option("--to", "end", required=True, help="End (a date includes that whole day).")
@click.option("--charter", "candidate", required=True, help="The candidate charter.")
@click.option("--current", default=None, help="The charter the traffic ran under.")
@click.option("--examples", default=3, show_default=True, help="Examples per decision.")
@click.option("--json", "json_out", default=None, help="Write the report as JSON.")
@_option("database")
def replay_command(
    start: str,
    end: str,
    candidate: str,
    current: str | None,
    examples: int,
    json_out: str | None,
    **flags: Any,
) -> None:
    """Re-run recorded traffic (as stored, redacted) against a candidate charter and report, per
    decision, what would be newly blocked and newly allowed.

    \b
    Example:
      charter replay --from 2025-01-01 --to 2025-01-31 --charter candidate.yaml \\
        --current examples/support-desk/charter.yaml --database sqlite:///charter.db
    """
    from charter.evals.replay import replay

    current_path = current or resolve({}).charter
    with _store(flags) as (store, _):
        result = replay(
            store,
            _charter(current_path),
            _charter(candidate),
            _when(start, end=False),
            _when(end, end=True),
            examples=examples,
        )
    console.print(
        f"{result.considered} requests recorded in the window; {result.replayed} replayed, "
        f"{result.no_content} without stored text (hashed content, or refused before the "
        "provider)"
    )
    table = Table(title="what the candidate would change", title_justify="left")
    for column in ("decision", "newly blocked", "newly allowed"):
        table.add_column(column)
    for decision, changes in sorted(result.by_decision.items()):
        table.add_row(decision, str(changes.newly_blocked), str(changes.newly_allowed))
    console.print(table)
    for decision, changes in sorted(result.by_decision.items()):
        for change in changes.examples:
            console.print(
                f"  {decision}: {change.kind.replace('_', ' ')} by {change.control} "
                f"(record {change.record_index}, {change.principal}, {change.model}): "
                f"{escape(change.text)!r}"
            )
    if not result.changes:
        console.print("no differences")
    if json_out:
        Path(json_out).write_text(json.dumps(result.to_dict(), indent=2) + "\n", "utf-8")


# --- charter grade --------------------------------------------------------------------------------


@click.group("grade")
def grade() -> None:
    """Graders' labels on answers, and how far the automatic grader agrees with them."""


@grade.command("label")
@click.option("--suite", default=None, help="The suite whose labels directory to use.")
@click.option("--case", "case_id", required=True, help="What the label is about.")
@click.option("--prompt", required=True, help="The request.")
@click.option("--answer", required=True, help="The answer being judged.")
@click.option("--acceptable/--unacceptable", required=True)
@click.option("--reason", required=True, help="Why.")
@click.option("--as", "grader", required=True, help="The grader (a principal with role grader).")
@click.option("--category", default="normal", show_default=True)
@click.option("--decision", "decisions", multiple=True, help="Decisions the label is about.")
@_option("charter")
def grade_label(
    suite: str | None,
    case_id: str,
    prompt: str,
    answer: str,
    acceptable: bool,
    reason: str,
    grader: str,
    category: str,
    decisions: tuple[str, ...],
    **flags: Any,
) -> None:
    """Record a grader's label; it becomes an eval case and measures the automatic grader.

    \b
    Example:
      charter grade label --as gwen --case parcel --prompt "Where is my parcel?" \\
        --answer "It ships tomorrow." --acceptable --reason "correct and polite"
    """
    from charter.evals.grading import add_label

    charter_path = resolve(flags).charter
    charter = _charter(charter_path)
    the_suite = _suite(charter_path, charter, suite)
    directory = the_suite.labels_dir()
    if directory is None:
        raise InvalidRequest(
            f"suite {the_suite.name} has no labels directory", hint="add `labels: labels` to it"
        )
    add_label(
        directory,
        charter,
        case_id=case_id,
        prompt=prompt,
        answer=answer,
        acceptable=acceptable,
        reason=reason,
        grader=grader,
        category=category,
        decisions=decisions,
    )
    console.print(f"label by {grader} recorded in {directory}")


@grade.command("agreement")
@click.option("--suite", default=None)
@_option("charter")
def grade_agreement(suite: str | None, **flags: Any) -> None:
    """How often the suite's automatic grader agrees with the human labels.

    \b
    Example:
      charter grade agreement --charter examples/support-desk/charter.yaml
    """
    from charter.evals.grading import build_grader, load_labels, measure

    charter_path = resolve(flags).charter
    charter = _charter(charter_path)
    the_suite = _suite(charter_path, charter, suite)
    if the_suite.grader is None:
        raise InvalidRequest("the suite has no grader", hint="add `grader:` to the suite")
    gate_control = _gate(charter)
    minimum = (gate_control.settings.thresholds if gate_control else EvalThresholds()).model_dump()[
        "grader_agreement_min"
    ]
    agreement = asyncio.run(
        measure(build_grader(the_suite.grader, charter), load_labels(the_suite.labels_dir()))
    )
    verdict = "trusted" if agreement.trusted(minimum) else "not trusted as evidence"
    console.print(
        f"{agreement.grader}: {agreement.agreed}/{agreement.labels} agree "
        f"({100 * agreement.rate:.1f}%), {agreement.false_accepts} false accepts, "
        f"{agreement.false_rejects} false rejects: {verdict} (minimum {100 * minimum:.0f}%)"
    )


COMMANDS: tuple[click.Command, ...] = (eval_command, redteam_command, replay_command, grade)


def register(group: click.Group) -> None:
    """Add the eval commands to the ``charter`` group."""
    for command in COMMANDS:
        group.add_command(command)
