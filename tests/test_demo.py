"""`charter demo` plays every step and shows each control deciding, naming its decision."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from charter.demo import run_demo


def test_demo_shows_each_enforced_decision(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    report = tmp_path / "evidence.md"
    assert run_demo(console, report_path=str(report)) == 0
    evidence = report.read_text()
    assert "refund-limits" in evidence and "head-of-support" in evidence
    # Per standard: how often answers met it, were repaired or blocked (issue 10).
    row = next(line for line in evidence.splitlines() if line.startswith("| refund-disclosure |"))
    assert "repaired 1" in row
    text = out.getvalue()
    assert "HTTP 403 (marketing-writer)" in text and "decision approved-models" in text
    assert "HTTP 429 (marketing-writer)" in text and "decision team-budgets" in text
    assert "marketing monthly budget ($50.00)" in text
    assert "3 of 3 requests in the last 60 s" in text and "decision fair-use" in text
    assert "HTTP 401 (intruder)" in text
    assert "streamed in" in text
    assert "the provider received:" in text and "<EMAIL_ADDRESS_1>" in text
    assert "verified" in text[text.index("The audit trail") :]
    assert "secrets-guard" in text and "don't share credentials" in text
    assert "block by input-injection for decision no-jailbreaks" in text
    # Issue 4, low confidence: a borderline message is queued, approved and re-sent.
    assert "escalate by input-injection for decision no-jailbreaks" in text
    assert "queued for a person as apr_" in text and "ravi approved apr_" in text
    flat = " ".join(text.split())  # rich wraps long lines
    assert "re-sent with X-Charter-Approval: 'Simulated answer to:" in flat
    assert "block by untrusted-injection for decision untrusted-content-is-hostile" in text
    assert "(charter: allow)" in text and "(charter: review)" in text
    assert "ravi approved" in text and "reported: executed" in text
    assert "[rule ownership]" in text and "3 already counted" in text
    assert "Refunds follow our refund policy" in text
    assert "block (shadow) by advice-topics" in text  # the topic guard records, changes nothing
    assert "block by prompt-leak for decision instructions-stay-private" in text
    assert "redact by foreign-links" in text and "[redacted]" in text
    summary = text[text.index("What the charter stopped") :]
    for control in (
        "model-allowlist",
        "team-budgets",
        "app-rate-limits",
        "pii-redaction",
        "secrets-guard",
        "input-injection",
        "untrusted-injection",
        "refund-policy",
        "prompt-leak",
        "foreign-links",
    ):
        assert control in summary
