"""What the console reads from the audit log: the newest records, searches, the requests of the
Traffic page and the live figures of the Decisions page.

Pages read the log from its end backwards in chunks and stop at a time or a count, so a page costs
what it shows, not the size of the log; ``MAX_SCAN`` bounds any one page's reading.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from charter.audit.merkle import InvalidProof, MerkleLevels, leaf_hash, verify_inclusion
from charter.storage.base import Store

CHUNK = 500
MAX_SCAN = 100_000

Record = dict[str, Any]


def newest_first(store: Store, *, max_scan: int = MAX_SCAN) -> Iterator[Record]:
    """Records from the newest backwards, parsed, at most ``max_scan`` of them."""
    end = store.audit_size()
    scanned = 0
    while end > 0 and scanned < max_scan:
        start = max(0, end - CHUNK)
        for leaf in reversed(store.audit_leaves(start, end)):
            if leaf.record_json is None:
                return  # older records were summarised by retention: nothing further back
            yield json.loads(leaf.record_json)
        scanned += end - start
        end = start


@dataclass(frozen=True, slots=True)
class Query:
    """A search of the audit log; empty fields match everything."""

    principal: str = ""
    decision: str = ""
    verdict: str = ""
    kind: str = ""
    text: str = ""  # in the request id, the reason or the details

    @classmethod
    def from_params(cls, params: Any) -> Query:
        return cls(
            **{name: str(params.get(name, "")).strip()[:200] for name in cls.__dataclass_fields__}
        )

    def matches(self, r: Record) -> bool:
        if self.principal and r.get("principal") != self.principal:
            return False
        if self.decision and self.decision not in r.get("decision_ids", ()):
            return False
        if self.verdict and r.get("action") != self.verdict:
            return False
        if self.kind and r.get("kind") != self.kind:
            return False
        if self.text:
            hay = " ".join(
                [
                    str(r.get("request_id") or ""),
                    str(r.get("reason") or ""),
                    json.dumps(r.get("details", {})),
                ]
            )
            if self.text.lower() not in hay.lower():
                return False
        return True


def search(
    store: Store, query: Query, *, limit: int = 100, where: Callable[[Record], bool] | None = None
) -> list[Record]:
    """The newest records matching ``query`` (and ``where``), newest first."""
    out = []
    for record in newest_first(store):
        if query.matches(record) and (where is None or where(record)):
            out.append(record)
            if len(out) >= limit:
                break
    return out


def is_request(record: Record) -> bool:
    """A record of one gateway request (as opposed to an action, approval or console step)."""
    return record.get("kind") == "verdict" and "model" in record.get("details", {})


@dataclass(frozen=True, slots=True)
class TrafficRow:
    """One request as the Traffic page shows it: content only in the form the record holds."""

    index: int
    time: str
    principal: str
    request_id: str
    model: str
    status: int
    verdict: str
    decisions: tuple[str, ...]
    reason: str
    verdicts: tuple[tuple[str, str], ...]  # (control, action) of every control that ruled
    content: tuple[tuple[str, str, str], ...]  # (role, form, value)
    cost_micro_usd: int

    @classmethod
    def of(cls, r: Record) -> TrafficRow:
        details = r.get("details", {})
        try:
            ruled = json.loads(details.get("verdicts") or "[]")
        except ValueError:
            ruled = []
        return cls(
            index=int(r["index"]),
            time=str(r["time"]),
            principal=str(r.get("principal") or ""),
            request_id=str(r.get("request_id") or ""),
            model=str(details.get("model", "")),
            status=int(details.get("status", 0) or 0),
            verdict=str(r.get("action") or ""),
            decisions=tuple(r.get("decision_ids", ())),
            reason=str(r.get("reason") or ""),
            verdicts=tuple(
                (
                    str(v.get("control")),
                    str(v.get("action")) + (" (shadow)" if v.get("shadow") else ""),
                )
                for v in ruled
                if isinstance(v, dict)
            ),
            content=tuple(
                (str(c["role"]), str(c["form"]), str(c["value"])) for c in r.get("content", ())
            ),
            cost_micro_usd=int(details.get("cost_micro_usd", 0) or 0),
        )


def traffic(store: Store, query: Query, limit: int = 100) -> list[TrafficRow]:
    """Recent requests matching ``query``, newest first."""
    return [TrafficRow.of(r) for r in search(store, query, limit=limit, where=is_request)]


@dataclass
class DecisionFigures:
    """Verdicts that named a decision in the last hour and day, by action."""

    hour: Counter[str] = field(default_factory=Counter)
    day: Counter[str] = field(default_factory=Counter)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


SEVERITY = {"allow": 0, "redact": 1, "escalate": 2, "block": 3}


def live_figures(
    store: Store, now: dt.datetime, serves: Mapping[str, tuple[str, ...]]
) -> dict[str, DecisionFigures]:
    """Per decision: what its controls said on the requests of the last hour and the last day.

    A request counts once per decision, with the most severe action of that decision's controls
    (``serves`` maps a control to its decisions): a request a guard blocked counts as a block for
    the guard's decision, not for the budget that let it through.
    """
    hour_ago, day_ago = now - dt.timedelta(hours=1), now - dt.timedelta(days=1)
    out: dict[str, DecisionFigures] = {}
    for record in newest_first(store):
        at = parse_time(record["time"])
        if at < day_ago:
            break  # records are appended in time order (a spool replay keeps its order)
        if not is_request(record):
            continue
        try:
            ruled = json.loads(record["details"].get("verdicts") or "[]")
        except ValueError:
            continue
        worst: dict[str, str] = {}
        for verdict in ruled:
            action = str(verdict.get("action"))
            if verdict.get("shadow") or action not in SEVERITY:
                continue  # a shadow control only watches
            for decision in serves.get(str(verdict.get("control")), ()):
                if SEVERITY[action] >= SEVERITY.get(worst.get(decision, "allow"), 0):
                    worst[decision] = action
        for decision, action in worst.items():
            figures = out.setdefault(decision, DecisionFigures())
            figures.day[action] += 1
            if at >= hour_ago:
                figures.hour[action] += 1
    return out


@dataclass(frozen=True, slots=True)
class EvalRunRecord:
    """An ``eval_run`` audit record: a gated run, or an owner's override."""

    index: int
    time: str
    event: str
    charter_version: str
    passed: bool
    run_id: str
    suite: str
    reason: str
    decisions: tuple[str, ...]
    details: dict[str, Any]


def eval_records(store: Store, limit: int = 50) -> list[EvalRunRecord]:
    """The newest eval runs and overrides, newest first."""
    out = []
    for r in search(store, Query(kind="eval_run"), limit=limit * 2):
        details = dict(r.get("details", {}))
        if details.get("event") not in ("run", "override"):
            continue  # console labels are eval_run records too; they are not runs
        out.append(
            EvalRunRecord(
                index=int(r["index"]),
                time=str(r["time"]),
                event=str(details.get("event")),
                charter_version=str(r.get("charter_version") or ""),
                passed=r.get("action") == "allow",
                run_id=str(details.get("run_id") or details.get("overrides_run") or ""),
                suite=str(details.get("suite") or ""),
                reason=str(r.get("reason") or ""),
                decisions=tuple(r.get("decision_ids", ())),
                details=details,
            )
        )
    return out[:limit]


def last_gate_by_decision(runs: list[EvalRunRecord], version: str) -> dict[str, EvalRunRecord]:
    """The newest gated run of ``version`` that measured each decision."""
    out: dict[str, EvalRunRecord] = {}
    for run in runs:  # newest first
        if run.event == "run" and run.charter_version == version:
            for decision in run.decisions:
                out.setdefault(decision, run)
    return out


@dataclass(frozen=True, slots=True)
class Proof:
    """A record's inclusion proof against the newest checkpoint that covers it."""

    record: Record
    leaf_hash: str
    tree_size: int | None  # None: no checkpoint covers the record yet
    root_hash: str | None
    path: tuple[str, ...]
    verified: bool


def inclusion_proof(store: Store, index: int, checkpoint: Any | None) -> Proof:
    """The record at ``index`` and its proof against ``checkpoint`` (a ``Checkpoint``), checked
    here with the RFC 9162 verifier so the page says whether it holds."""
    leaves = store.audit_leaves(index, index + 1)
    if not leaves:
        from charter.errors import NotFound

        raise NotFound(f"the log has no record {index}", hint="search the audit log for records")
    if leaves[0].record_json is None:  # summarised by retention: only its leaf hash is kept
        record: dict[str, Any] = {"index": index, "summarised_by_retention": True}
        hashed = leaves[0].leaf_hash
    else:
        data = leaves[0].record_json.encode()
        record = json.loads(data)
        hashed = leaf_hash(data)
    if checkpoint is None or index >= checkpoint.tree_size:
        return Proof(record, hashed.hex(), None, None, (), False)
    size = checkpoint.tree_size
    hashes = []
    for start in range(0, size, 50_000):
        hashes += [leaf.leaf_hash for leaf in store.audit_leaves(start, min(size, start + 50_000))]
    path = MerkleLevels(hashes).inclusion_proof(index, size)
    try:
        verify_inclusion(hashed, index, size, path, checkpoint.root_hash)
        verified = True
    except InvalidProof:  # the page says it does not hold, and where to look
        verified = False
    return Proof(
        record,
        hashed.hex(),
        size,
        checkpoint.root_hash.hex(),
        tuple(h.hex() for h in path),
        verified,
    )
