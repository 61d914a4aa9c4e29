"""Outputs of a run: the terminal summary, JSON, JUnit XML for CI, and a self-contained HTML report
whose charts are inline SVG (no script, no CDN: it opens offline and in an artifact viewer)."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charter.evals.gate import GateResult
from charter.evals.metrics import Rates, Summary, summarize
from charter.evals.runner import Run


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


# --- JSON -----------------------------------------------------------------------------------------


def run_json(run: Run, gate: GateResult | None = None) -> dict[str, Any]:
    """The run, its summary and its gate: the file a later run pins as its baseline."""
    out = run.to_dict()
    out["summary"] = summarize(run).to_dict()
    if gate is not None:
        out["gate"] = gate.to_dict()
    return out


def write_json(run: Run, path: str | Path, gate: GateResult | None = None) -> None:
    Path(path).write_text(json.dumps(run_json(run, gate), indent=2) + "\n", encoding="utf-8")


def load_run(path: str | Path) -> Run:
    """A run written by ``write_json`` (a pinned baseline)."""
    from charter.errors import InvalidRequest

    file = Path(path)
    if not file.is_file():
        raise InvalidRequest(
            f"baseline {file} does not exist",
            hint="write one with `charter eval --json FILE` and commit it",
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidRequest(f"baseline {file} is not JSON ({exc})", hint="regenerate it") from None
    return Run.from_dict(data)


# --- terminal -------------------------------------------------------------------------------------


def _rates_row(name: str, r: Rates) -> list[str]:
    return [
        name,
        str(r.cases),
        f"{r.stopped}/{r.attacks} ({_pct(r.catch_rate)})",
        f"{r.refused}/{r.legitimate} ({_pct(r.false_refusal_rate)})",
        str(r.escalated),
        f"{r.latency_p50_ms:.2f}",
        f"${r.cost_micro_usd / 1e6:.6f}",
    ]


def _rates_table(title: str, rows: dict[str, Rates]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "",
        "cases",
        "attacks stopped",
        "legitimate refused",
        "escalated",
        "p50 ms",
        "cost",
    ):
        table.add_column(column, justify="left" if not column else "right")
    for name, r in rows.items():
        table.add_row(*_rates_row(name, r))
    return table


def print_summary(console: Console, run: Run, gate: GateResult | None = None) -> None:
    """Per decision and per category, failures, then the gate."""
    summary = summarize(run)
    console.print(
        f"[bold]{escape(run.suite)}[/] ({run.mode} run {run.run_id}): charter "
        f"{run.charter_version[:19]}…, model {', '.join(run.models)}, "
        f"{summary.total_cases} cases in {run.duration_s:.2f} s"
    )
    console.print(_rates_table("per decision", summary.by_decision))
    console.print(_rates_table("per category", {**summary.by_category, "all": summary.overall}))
    for decision, r in summary.unmeasured.items():
        console.print(
            f"[yellow]not measured:[/] {decision} ({r.cases} cases; no enforced control serving "
            f"it judges requests; as it stands {r.stopped}/{r.attacks} attacks are stopped)"
        )
    failed = [r for r in run.results if not r.passed]
    if failed:
        table = Table(title="failed cases", title_justify="left")
        for column in ("case", "category", "measured", "why"):
            table.add_column(column)
        for case in failed:
            table.add_row(
                case.case_id,
                case.category.value,
                "yes" if case.measured else "no",
                "; ".join(case.failures),
            )
        console.print(table)
    if gate is None:
        return
    for note in gate.notes:
        console.print(f"[dim]note:[/] {escape(note)}")
    if gate.passed:
        console.print(f"[bold green]gate passed[/] ({gate.control_id or 'thresholds'})")
    for failure in gate.failures:
        console.print(f"[bold red]gate failed: {failure.gate}[/] {escape(failure.message)}")


# --- JUnit XML ------------------------------------------------------------------------------------


def junit_xml(run: Run, gate: GateResult | None = None) -> str:
    """One test case per eval case (skipped when unmeasured) and one per gate."""
    suites = ET.Element("testsuites", name=f"charter eval {run.suite}")
    cases = ET.SubElement(suites, "testsuite", name=f"{run.suite}.cases")
    failures = skipped = 0
    for r in run.results:
        element = ET.SubElement(
            cases,
            "testcase",
            classname=f"{run.suite}.{r.category.value}",
            name=r.case_id,
            time=f"{r.latency_ms / 1000:.6f}",
        )
        if not r.measured:
            skipped += 1
            ET.SubElement(element, "skipped", message="every control of its decisions is off")
        elif not r.passed:
            failures += 1
            failure = ET.SubElement(element, "failure", message="; ".join(r.failures))
            failure.text = f"decisions: {', '.join(r.decisions)}"
    cases.set("tests", str(len(run.results)))
    cases.set("failures", str(failures))
    cases.set("skipped", str(skipped))
    if gate is not None:
        gates = ET.SubElement(suites, "testsuite", name=f"{run.suite}.gate")
        names = ["attack_block_rate", "false_refusal_rate", "required_actions", "evidence"]
        if gate.baseline_run_id:
            names.append("regression")
        for name in names:
            element = ET.SubElement(gates, "testcase", classname=f"{run.suite}.gate", name=name)
            for f in gate.failures:
                if f.gate == name:
                    ET.SubElement(element, "failure", message=f.message)
        gates.set("tests", str(len(names)))
        gates.set("failures", str(len({f.gate for f in gate.failures})))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode")


# --- HTML with inline SVG charts ------------------------------------------------------------------

GREEN, RED, GREY, BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float | None, str]]]],
    *,
    markers: dict[tuple[str, str], float] | None = None,
) -> str:
    """A horizontal grouped bar chart of rates in [0, 1] as an SVG element.

    ``rows`` are (label, [(series, value, colour)]); ``markers`` put a black tick at a baseline
    value for (label, series).
    """
    label_w, bar_w, bar_h, gap = 220, 360, 14, 10
    series = len(rows[0][1]) if rows else 1
    row_h = series * bar_h + gap
    height = 40 + len(rows) * row_h + 30
    width = label_w + bar_w + 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="18" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]
    for tick in (0, 0.5, 1):
        x = label_w + tick * bar_w
        out.append(
            f'<line x1="{x}" y1="30" x2="{x}" y2="{height - 25}" stroke="#ddd" />'
            f'<text x="{x}" y="{height - 10}" font-size="11" text-anchor="middle">'
            f"{int(tick * 100)}%</text>"
        )
    for i, (label, values) in enumerate(rows):
        top = 36 + i * row_h
        out.append(
            f'<text x="{label_w - 8}" y="{top + series * bar_h / 2 + 4}" font-size="12" '
            f'text-anchor="end">{html.escape(label)}</text>'
        )
        for j, (name, value, colour) in enumerate(values):
            y = top + j * bar_h
            if value is None:
                out.append(
                    f'<text x="{label_w + 4}" y="{y + bar_h - 3}" font-size="10" fill="{GREY}">'
                    f"{html.escape(name)}: no cases</text>"
                )
                continue
            w = max(1.0, value * bar_w)
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{colour}"><title>{html.escape(name)}: {_pct(value)}</title></rect>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}" font-size="10">'
                f"{html.escape(name)} {_pct(value)}</text>"
            )
            base = (markers or {}).get((label, name))
            if base is not None:
                bx = label_w + base * bar_w
                out.append(
                    f'<line x1="{bx:.1f}" y1="{y - 1}" x2="{bx:.1f}" y2="{y + bar_h - 1}" '
                    f'stroke="black" stroke-width="2"><title>baseline {_pct(base)}</title></line>'
                )
    out.append("</svg>")
    return "".join(out)


def _markers(base: Summary | None, scope: str) -> dict[tuple[str, str], float]:
    if base is None:
        return {}
    table = base.by_decision if scope == "decision" else base.by_category
    out = {}
    for label, r in table.items():
        for name, value in (
            ("attacks stopped", r.catch_rate),
            ("legitimate refused", r.false_refusal_rate),
            ("pass rate", r.pass_rate),
        ):
            if value is not None:
                out[(label, name)] = value
    return out


def html_report(run: Run, gate: GateResult | None = None, baseline: Run | None = None) -> str:
    """The whole report as one HTML document with inline SVG charts."""
    summary = summarize(run)
    base = summarize(baseline) if baseline is not None else None
    decision_rows = [
        (
            d,
            [
                ("attacks stopped", r.catch_rate, GREEN),
                ("legitimate refused", r.false_refusal_rate, RED),
            ],
        )
        for d, r in summary.by_decision.items()
    ]
    category_rows = [
        (
            c,
            [
                ("pass rate", r.pass_rate, BLUE),
                ("attacks stopped", r.catch_rate, GREEN),
                ("legitimate refused", r.false_refusal_rate, RED),
            ],
        )
        for c, r in summary.by_category.items()
    ]
    charts = [
        bar_chart("Per decision", decision_rows, markers=_markers(base, "decision")),
        bar_chart("Per category", category_rows, markers=_markers(base, "category")),
    ]
    if base is not None:
        versus = [
            (d, [("now", r.pass_rate, BLUE), ("baseline", _base_pass(base, d), GREY)])
            for d, r in summary.by_decision.items()
        ]
        charts.append(bar_chart("Pass rate against the baseline", versus))
    if gate is None:
        verdict = ""
    elif gate.passed:
        verdict = '<p class="pass">Gate passed</p>'
    else:
        verdict = (
            '<p class="fail">Gate failed</p><ul>'
            + "".join(
                f"<li><b>{html.escape(f.gate)}</b>: {html.escape(f.message)}</li>"
                for f in gate.failures
            )
            + "</ul>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (gate.notes if gate else ()))
    rows = "".join(
        "<tr class='{}'><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td></tr>".format(
            "ok" if r.passed else ("skip" if not r.measured else "bad"),
            html.escape(r.case_id),
            r.category.value,
            html.escape(", ".join(r.decisions)),
            r.expected.value,
            r.actual.value,
            html.escape(r.deciding_control or ""),
            html.escape("; ".join(r.failures + r.advisory)),
        )
        for r in sorted(run.results, key=lambda r: (r.passed, r.case_id))
    )
    o = summary.overall
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>charter eval: {html.escape(run.suite)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.pass {{ color: {GREEN}; font-weight: bold; font-size: 1.3em; }}
.fail {{ color: {RED}; font-weight: bold; font-size: 1.3em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ddd; padding: 3px 6px; text-align: left; }}
tr.bad td {{ background: #fdecea; }} tr.skip td {{ color: {GREY}; }}
.charts svg {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>charter eval: {html.escape(run.suite)}</h1>
<p>{run.mode} run <code>{run.run_id}</code>, {run.started_at}; charter
<code>{html.escape(run.charter_version)}</code>; model {html.escape(", ".join(run.models))};
{summary.total_cases} cases ({o.cases} measured).
Attacks stopped {o.stopped}/{o.attacks} ({_pct(o.catch_rate)}); legitimate refused
{o.refused}/{o.legitimate} ({_pct(o.false_refusal_rate)}); escalated {o.escalated};
latency p50 {o.latency_p50_ms:.2f} ms, p95 {o.latency_p95_ms:.2f} ms; cost
${o.cost_micro_usd / 1e6:.6f}.</p>
{verdict}<ul>{notes}</ul>
<div class="charts">{"".join(charts)}</div>
<h2>Cases</h2>
<table><tr><th>case</th><th>category</th><th>decisions</th><th>expected</th><th>actual</th>
<th>decided by</th><th>why</th></tr>{rows}</table>
</body></html>
"""


def _base_pass(base: Summary, decision: str) -> float | None:
    r = base.by_decision.get(decision)
    return r.pass_rate if r else None
