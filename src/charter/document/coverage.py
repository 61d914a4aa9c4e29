"""The decision -> control map: which decisions are enforced, by what, and what is left bare."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from charter.document.model import Charter, Control, Decision, Mode


class Coverage(StrEnum):
    ENFORCED = "enforced"  # at least one control enforces it
    SHADOW = "shadow"  # its controls only watch and record
    OFF = "off"  # all its controls are switched off
    UNCOVERED = "uncovered"  # no control at all: a slide


@dataclass(frozen=True, slots=True)
class DecisionCoverage:
    decision: Decision
    controls: tuple[Control, ...]
    unknown: tuple[str, ...]

    @property
    def status(self) -> Coverage:
        modes = {c.mode for c in self.controls}
        if not modes:
            return Coverage.UNCOVERED
        if Mode.ENFORCE in modes:
            return Coverage.ENFORCED
        return Coverage.SHADOW if Mode.SHADOW in modes else Coverage.OFF


@dataclass(frozen=True, slots=True)
class CoverageMap:
    decisions: tuple[DecisionCoverage, ...]
    orphans: tuple[Control, ...]

    def by_status(self, status: Coverage) -> list[DecisionCoverage]:
        return [d for d in self.decisions if d.status is status]


def coverage(charter: Charter) -> CoverageMap:
    """Both directions of the map merged: a control counts if either side names the other."""
    by_id = {c.id: c for c in charter.controls}
    rows = []
    claimed: set[str] = set()
    for decision in charter.decisions:
        ids = list(
            dict.fromkeys(
                [
                    *decision.enforced_by,
                    *(c.id for c in charter.controls if decision.id in c.serves),
                ]
            )
        )
        claimed.update(ids)
        rows.append(
            DecisionCoverage(
                decision,
                tuple(by_id[i] for i in ids if i in by_id),
                tuple(i for i in ids if i not in by_id),
            )
        )
    decision_ids = {d.id for d in charter.decisions}
    orphans = tuple(
        c
        for c in charter.controls
        if c.id not in claimed and not any(d in decision_ids for d in c.serves)
    )
    return CoverageMap(tuple(rows), orphans)
