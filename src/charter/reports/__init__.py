"""Evidence reports and usage value, computed from the audit trail (see docs/observability.md)."""

from charter.reports.catalog import builtin_frameworks, load_mapping
from charter.reports.evidence import EvidenceReport, build_report
from charter.reports.render import render, to_html, to_json, to_markdown
from charter.reports.usage import UsageRow, usage_rows

__all__ = [
    "EvidenceReport",
    "UsageRow",
    "build_report",
    "builtin_frameworks",
    "load_mapping",
    "render",
    "to_html",
    "to_json",
    "to_markdown",
    "usage_rows",
]
