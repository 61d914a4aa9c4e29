"""External frameworks a charter's decisions name (``frameworks: [owasp-llm-2025:LLM01, ...]``).

The catalogs ship in ``charter/reports/frameworks/*.yaml``: each lists a framework's items and the
kinds of evidence that show an item was acted on in a period. An optional mapping file relates
decisions to items without editing the charter::

    decisions:
      no-jailbreaks: [owasp-llm-2025:LLM01]
      everything-auditable: [eu-ai-act:art-12, nist-ai-rmf:GOVERN]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from charter.document.model import Charter
from charter.errors import ConfigurationError, InvalidRequest

EVIDENCE_KINDS = frozenset(
    {"verdict", "escalation", "approval", "eval_run", "drift_alert", "monitored", "checkpoint"}
)


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a framework and what counts as evidence for it."""

    framework: str
    id: str
    title: str
    evidence: tuple[str, ...]
    requires_all: bool = False

    @property
    def ref(self) -> str:
        return f"{self.framework}:{self.id}"


@dataclass(frozen=True, slots=True)
class Framework:
    id: str
    title: str
    url: str | None
    items: tuple[Item, ...]


def _parse(data: Any, source: str) -> Framework:
    try:
        fid = str(data["id"])
        items = []
        for raw in data["items"]:
            evidence = tuple(str(k) for k in raw["evidence"])
            unknown = set(evidence) - EVIDENCE_KINDS
            if unknown:
                raise ValueError(f"unknown evidence kinds {sorted(unknown)}")
            items.append(
                Item(fid, str(raw["id"]), str(raw["title"]), evidence, raw.get("requires") == "all")
            )
        return Framework(fid, str(data["title"]), data.get("url"), tuple(items))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"framework catalog {source} is malformed ({exc})",
            hint="each needs id, title and items of {id, title, evidence: [kinds]}",
        ) from None


def builtin_frameworks() -> dict[str, Framework]:
    """The catalogs shipped with Charter, by id."""
    out = {}
    folder = resources.files("charter.reports.frameworks")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            framework = _parse(yaml.safe_load(entry.read_text()), entry.name)
            out[framework.id] = framework
    return out


def load_mapping(path: str | Path) -> dict[str, list[str]]:
    """A mapping file: ``decisions: {decision-id: [framework:item, ...]}``."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidRequest(
            f"cannot read the framework mapping {path}: {exc}",
            hint="give a YAML file with `decisions: {decision-id: [framework:item]}`",
        ) from None
    decisions = data.get("decisions") if isinstance(data, dict) else None
    if not isinstance(decisions, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in decisions.values()
    ):
        raise InvalidRequest(
            f"the framework mapping {path} has no `decisions:` map of lists",
            hint="e.g. decisions: {no-jailbreaks: [owasp-llm-2025:LLM01]}",
        )
    return {str(k): list(v) for k, v in decisions.items()}


def named_items(
    charter: Charter, mapping: Mapping[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Framework item refs -> the decisions that name them (in the charter or the mapping)."""
    out: dict[str, list[str]] = {}
    for decision in charter.decisions:
        refs = list(decision.frameworks) + list((mapping or {}).get(decision.id, []))
        for ref in dict.fromkeys(refs):
            out.setdefault(ref, []).append(decision.id)
    return out
