"""The example charter with monitor controls added, for the drift, status and report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from charter.document.loader import load_charter_text
from charter.document.model import Charter

EXAMPLE = Path("examples/support-desk/charter.yaml")


def example_with(
    monitors: list[dict[str, Any]] | None = None,
    *,
    frameworks: dict[str, list[str]] | None = None,
    content: str | None = None,
) -> str:
    """The example charter's text with ``monitors`` appended (each serving no-jailbreaks) and
    its own monitors switched off (so a test sees only the alerts of the monitors it adds),
    framework items on decisions, and optionally another audit content form."""
    data = load_charter_text(EXAMPLE.read_text()).require()
    doc: dict[str, Any] = data.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    for control in doc["controls"]:
        if control["kind"] == "monitor":
            control["mode"] = "off"
    for monitor in monitors or []:
        monitor = {"kind": "monitor", "serves": ["no-jailbreaks"], **monitor}
        doc["controls"].append(monitor)
        for decision_id in monitor["serves"]:
            decision = next(d for d in doc["decisions"] if d["id"] == decision_id)
            decision["enforced_by"].append(monitor["id"])
    for decision in doc["decisions"]:
        if frameworks and decision["id"] in frameworks:
            decision["frameworks"] = frameworks[decision["id"]]
    if content is not None:
        audit = next(c for c in doc["controls"] if c["kind"] == "audit")
        audit["settings"] = {"content": content}
    return yaml.safe_dump(doc, sort_keys=False)


def charter_with(monitors: list[dict[str, Any]] | None = None, **kwargs: Any) -> Charter:
    return load_charter_text(example_with(monitors, **kwargs)).require()


def write_charter(path: Path, monitors: list[dict[str, Any]] | None = None, **kwargs: Any) -> str:
    path.write_text(example_with(monitors, **kwargs))
    return str(path)
