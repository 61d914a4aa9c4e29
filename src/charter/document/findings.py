"""Findings: what `charter check` reports, each pinned to a file, line and column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a charter file.

    ``code`` is a stable identifier (``unknown-key``, ``uncovered-decision``) for tools and tests;
    ``message`` says what is wrong and ``hint`` how to fix it. Lines and columns are 1-based.
    """

    severity: Severity
    code: str
    message: str
    file: str
    line: int
    column: int
    path: str = ""
    hint: str | None = None

    def render(self) -> str:
        """``file:line:column: severity[code]: message (hint)``, the format editors understand."""
        text = (
            f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}"
        )
        return f"{text}; {self.hint}" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
        }


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors and warnings in file order, so the list reads top to bottom like the file."""
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.code))
