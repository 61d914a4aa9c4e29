"""Render an ``EvidenceReport`` as Markdown, HTML or JSON; the three say the same things."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping

from charter.errors import InvalidRequest
from charter.reports.evidence import EvidenceReport

FORMATS = ("markdown", "html", "json")


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{action} {n}" for action, n in sorted(counts.items())) or "none"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_json(report: EvidenceReport) -> str:
    """The report as indented JSON (the form tools read)."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _sections(report: EvidenceReport) -> list[tuple[str, list[str], list[list[str]] | str]]:
    """The report as (heading, table header, rows or a paragraph), shared by both text forms."""
    data = report.to_dict()
    period = data["period"]
    out: list[tuple[str, list[str], list[list[str]] | str]] = []
    summary = (
        f"{report.organization}, charter version {report.charter_version}. "
        f"Period {period['from']} to {period['to']}: {report.records} audit records"
        + (
            f" (indexes {report.first_index} to {report.last_index})"
            if report.first_index is not None
            else ""
        )
        + f". Generated {data['generated_at']}."
    )
    out.append(("Summary", [], summary))
    for note in report.notes:
        out.append(("Note", [], note))
    for d in report.decisions:
        rows = [
            [
                c.id,
                c.kind,
                c.mode,
                str(c.rulings),
                str(c.fired),
                _counts(c.verdicts),
                _counts(c.shadow_verdicts),
                _counts(c.outcomes) if c.outcomes else "",
            ]
            for c in d.controls
        ]
        head = (
            f"Decision {d.id}: {d.statement} Owner: {d.owner}; risk {d.risk}; review by "
            f"{d.review_by}; {d.requests} requests in the period; {d.escalations} escalated."
        )
        if d.frameworks:
            head += " Frameworks: " + ", ".join(d.frameworks) + "."
        out.append((f"Decision {d.id}", [], head))
        out.append(
            (
                f"Controls of {d.id}",
                [
                    "control",
                    "kind",
                    "mode",
                    "rulings",
                    "fired",
                    "verdicts",
                    "shadow verdicts",
                    "standard met / repaired / flagged / blocked",
                ],
                rows,
            )
        )
        evidence = []
        for label, refs in (
            ("eval run", d.eval_runs),
            ("approval", d.approvals),
            ("drift alert", d.drift_alerts),
        ):
            for ref in refs:
                evidence.append(
                    [label, str(ref.index), ref.time, ref.action or "", ref.reason or ""]
                )
        out.append(
            (
                f"Eval runs, approvals and drift alerts of {d.id}",
                ["record", "index", "time", "action", "reason"],
                evidence or f"No eval runs, approvals or drift alerts for {d.id} in the period.",
            )
        )
    out.append(
        (
            "Audit checkpoints",
            ["tree size", "root hash", "key", "signed at"],
            [[str(c.tree_size), c.root_hash, c.key_id, c.timestamp] for c in report.checkpoints]
            or "No signed checkpoint covers records of this period.",
        )
    )
    for fw in report.frameworks:
        out.append(
            (
                fw.title,
                ["item", "title", "decisions", "status", "evidence found"],
                [
                    [i.id, i.title, ", ".join(i.decisions), i.status, ", ".join(i.found)]
                    for i in fw.items
                ],
            )
        )
    if report.unknown_framework_items:
        out.append(
            (
                "Unknown framework items",
                [],
                "Named in the charter but in no catalog: "
                + ", ".join(report.unknown_framework_items),
            )
        )
    out.append(
        (
            "Usage by team and use case",
            ["team", "use case", "requests", "answered without intervention", "share", "cost USD"],
            [
                [
                    u.team,
                    u.use_case,
                    str(u.requests),
                    str(u.answered_clean),
                    f"{u.clean_share:.1%}",
                    f"{u.cost_micro_usd / 1e6:.6f}",
                ]
                for u in report.usage
            ]
            or "No requests in the period.",
        )
    )
    return out


def to_markdown(report: EvidenceReport) -> str:
    """The report as GitHub-flavoured Markdown."""
    lines = [f"# Evidence report: {report.organization}", ""]
    for heading, header, body in _sections(report):
        lines += [f"## {heading}", ""]
        if isinstance(body, str):
            lines += [body, ""]
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
        lines.append("")
    return "\n".join(lines)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;margin-bottom:1.5rem}"
    "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}"
)


def to_html(report: EvidenceReport) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    e = html.escape
    title = f"Evidence report: {report.organization}"
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for heading, header, body in _sections(report):
        parts.append(f"<h2>{e(heading)}</h2>")
        if isinstance(body, str):
            parts.append(f"<p>{e(body)}</p>")
            continue
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header))
        parts.append("</tr></thead><tbody>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


RENDERERS: dict[str, Callable[[EvidenceReport], str]] = {
    "markdown": to_markdown,
    "html": to_html,
    "json": to_json,
}


def render(report: EvidenceReport, fmt: str) -> str:
    """The report in ``fmt``: markdown, html or json."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise InvalidRequest(f"unknown report format {fmt!r}", hint="use markdown, html or json")
    return renderer(report)


def format_for(path: str) -> str:
    """The format a file name asks for (.md, .html, .json), markdown otherwise."""
    lower = path.lower()
    if lower.endswith((".html", ".htm")):
        return "html"
    if lower.endswith(".json"):
        return "json"
    return "markdown"
