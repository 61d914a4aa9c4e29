"""`charter audit`: verify the log, prove a record, export a bundle, sign a checkpoint, search,
apply retention and erase content on request."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charter.audit.checkpoint import Checkpoint, load_public_key, public_key_path
from charter.audit.control import retention_period
from charter.audit.log import (
    SIGNING_KEY_FILE,
    AuditLog,
    Draft,
    open_keys,
    stored_checkpoints,
    stored_leaf_bytes,
    stored_log,
)
from charter.audit.merkle import MerkleLevels, leaf_hash
from charter.audit.records import ContentForm, RecordKind, parse_leaf
from charter.audit.verify import (
    PrunedLeaf,
    VerificationReport,
    build_bundle,
    verify_bundle,
    verify_log,
    verify_log_from,
)
from charter.document.loader import load_charter
from charter.document.model import DURATION_PATTERN, duration_seconds
from charter.errors import InvalidRequest, NotFound
from charter.options import setting_option as _option
from charter.settings import resolve
from charter.storage import Store, open_store

console = Console(highlight=False)


def _store(flags: dict[str, Any]) -> Store:
    store = open_store(resolve(flags).database)
    store.migrate()
    return store


def _public_keys(flags: dict[str, Any], given: tuple[str, ...]) -> list[Any]:
    if given:
        return [load_public_key(path) for path in given]
    return [load_public_key(public_key_path(Path(resolve(flags).data_dir) / SIGNING_KEY_FILE))]


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit trail: verify, prove, export, checkpoint, retain, erase, search."""


_KEYS_HELP = (
    "A public key to trust (PEM); repeat it for every key the log was signed with "
    "(default: the data dir's)."
)


@audit.command()
@click.option("--public-key", "public_keys", multiple=True, help=_KEYS_HELP)
@click.option(
    "--from-checkpoint",
    "from_size",
    type=click.IntRange(min=1),
    default=None,
    help="Verify only from the checkpoint of this tree size on (where an earlier audit ended).",
)
@_option("database")
@_option("data_dir")
def verify(public_keys: tuple[str, ...], from_size: int | None, **flags: Any) -> None:
    """Verify every record against the signed checkpoints; exit 1 on any tampering.

    Records summarised by retention are verified from their stored leaf hashes against the
    signed retention record. With --from-checkpoint SIZE only the records from SIZE on are
    read: the stored leaf hashes below SIZE must give that checkpoint's root, and the newer
    records must extend it to every later checkpoint (an RFC 9162 consistency proof).

    \b
    Examples:
      charter audit verify --database sqlite:///.charter/charter.db
      charter audit verify --from-checkpoint 120000
    """
    keys = _public_keys(flags, public_keys)
    store = _store(flags)
    try:
        checkpoints = stored_checkpoints(store)
        if from_size is None:
            report = verify_log(stored_log(store), checkpoints, keys)
        else:
            _require_checkpoint(checkpoints, from_size)
            report = verify_log_from(
                store.audit_leaf_hashes(0, from_size),
                stored_log(store, from_size),
                checkpoints,
                keys,
            )
    finally:
        store.close()
    _print_report(report)
    sys.exit(0 if report.ok else 1)


def _require_checkpoint(checkpoints: list[Checkpoint], size: int) -> None:
    if any(cp.tree_size == size for cp in checkpoints):
        return
    sizes = sorted(cp.tree_size for cp in checkpoints)
    shown = ", ".join(map(str, sizes[-5:])) or "none"
    raise NotFound(
        f"the log has no checkpoint of tree size {size}",
        hint=f"pass the size of a stored checkpoint (the latest: {shown})",
    )


def _print_report(report: VerificationReport) -> None:
    if report.ok:
        console.print(f"[green]ok[/]: {escape(report.summary())}")
    else:
        console.print(f"[bold red]FAILED[/]: {escape(report.summary())}")


@audit.command()
@click.argument("index", type=int)
@_option("database")
def prove(index: int, **flags: Any) -> None:
    """Print a record and its inclusion proof against the latest checkpoint (JSON).

    A record retention summarised is printed as null, with its leaf hash and proof.

    \b
    Example:
      charter audit prove 41 > proof.json
    """
    store = _store(flags)
    try:
        checkpoints = stored_checkpoints(store)
        if not checkpoints:
            raise NotFound("the log has no checkpoint yet", hint="run `charter audit checkpoint`")
        latest = max(checkpoints, key=lambda c: c.tree_size)
        if not 0 <= index < latest.tree_size:
            raise NotFound(
                f"record {index} is not covered by the latest checkpoint (size {latest.tree_size})",
                hint="sign a new checkpoint first",
            )
        leaves = stored_log(store)[: latest.tree_size]
    finally:
        store.close()
    hashes = [x.leaf_hash if isinstance(x, PrunedLeaf) else leaf_hash(x) for x in leaves]
    levels = MerkleLevels(hashes)
    proof = levels.inclusion_proof(index, latest.tree_size)
    leaf = leaves[index]
    click.echo(
        json.dumps(
            {
                # A record retention summarised has only its leaf hash left to prove.
                "record": None if isinstance(leaf, PrunedLeaf) else json.loads(leaf),
                "summarised": isinstance(leaf, PrunedLeaf),
                "leaf_hash": hashes[index].hex(),
                "index": index,
                "checkpoint": latest.to_dict(),
                "inclusion_proof": [h.hex() for h in proof],
            },
            indent=2,
        )
    )


@audit.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--only",
    "only",
    multiple=True,
    type=int,
    help="Export only these records, with inclusion proofs (repeatable).",
)
@_option("database")
@_option("data_dir")
def export(output: str, only: tuple[int, ...], **flags: Any) -> None:
    """Write a bundle that verifies offline with only the public key.

    \b
    Example:
      charter audit export -o audit-2026-11.json
      charter audit export -o one.json --only 41
    """
    store = _store(flags)
    try:
        bundle = build_bundle(
            stored_log(store),
            stored_checkpoints(store),
            _public_keys(flags, ())[0],
            proofs_for=list(only) or None,
        )
    finally:
        store.close()
    Path(output).write_text(json.dumps(bundle))
    console.print(f"wrote {output}")


@audit.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", required=True, help="The public key you trust (PEM).")
def verify_bundle_cmd(bundle: str, public_key: str) -> None:
    """Verify an exported bundle offline with only the public key.

    \b
    Example:
      charter audit verify-bundle audit-2026-11.json --public-key audit-signing-key.pem.pub
    """
    report = verify_bundle(json.loads(Path(bundle).read_text()), load_public_key(public_key))
    console.print(
        ("[green]ok[/]: " if report.ok else "[bold red]FAILED[/]: ") + escape(report.summary())
    )
    sys.exit(0 if report.ok else 1)


@audit.command()
@_option("database")
@_option("data_dir")
def checkpoint(**flags: Any) -> None:
    """Sign a checkpoint over the whole log now.

    \b
    Example:
      charter audit checkpoint
    """
    store = _store(flags)
    log = AuditLog(store, open_keys(resolve(flags).data_dir))
    try:
        signed = log.checkpoint()
    finally:
        log.close()
        store.close()
    console.print(
        f"checkpoint: {signed.tree_size} records, root {signed.root_hash.hex()}, "
        f"key {signed.key_id}"
    )


@audit.command()
@click.option(
    "--older-than",
    default=None,
    help="Summarise records committed longer ago than this (e.g. 400d); default: the charter's.",
)
@click.option("--public-key", "public_keys", multiple=True, help=_KEYS_HELP)
@_option("charter")
@_option("database")
@_option("data_dir")
def retain(older_than: str | None, public_keys: tuple[str, ...], **flags: Any) -> None:
    """Apply retention: summarise old records by a signed checkpoint, then remove their bodies.

    The log is verified first (nothing is removed from a log that does not verify), a
    checkpoint is signed at the first record younger than the period, and a signed `retention`
    record names the summarised range. Leaf hashes stay, so the log still verifies. The
    gateway does this by itself every few hours; this command does it now.

    \b
    Examples:
      charter audit retain                      # the charter's audit retention
      charter audit retain --older-than 400d
    """
    settings = resolve(flags)
    if older_than is None:
        older_than = retention_period(load_charter(settings.charter).require())
        if older_than is None:
            raise InvalidRequest(
                f"the charter {settings.charter} has no enforced audit control, so it sets no "
                "retention",
                hint="pass --older-than 400d, or add an audit control with settings.retention",
            )
    elif not re.fullmatch(DURATION_PATTERN, older_than):
        raise InvalidRequest(
            f"--older-than {older_than!r} is not a duration", hint="write e.g. 400d, 52w or 24h"
        )
    # Without --public-key the log's own signing key is the trusted one.
    keys = [load_public_key(path) for path in public_keys] or None
    store = _store(flags)
    log = AuditLog(store, open_keys(settings.data_dir))
    try:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=duration_seconds(older_than))
        result = log.retain(cutoff, retention=older_than, public_keys=keys)
    finally:
        log.close()
        store.close()
    if result is None:
        console.print(f"nothing to summarise: no record is older than {older_than}")
        return
    console.print(
        f"records [0, {result.pruned_before}) summarised by the checkpoint of size "
        f"{result.pruned_before} (root {result.checkpoint.root_hash.hex()}) and retention "
        f"record {result.record_index}; {result.removed} record bodies removed"
    )


@audit.command()
@click.option("--request-id", required=True, help="The request whose stored content to erase.")
@click.option("--reason", default="data subject request", show_default=True)
@_option("database")
@_option("data_dir")
def erase(request_id: str, reason: str, **flags: Any) -> None:
    """Erase the content a request's records keep outside the log (a data-subject request).

    Only content in the `external` form is stored outside the hashed leaves; it is deleted, an
    `erasure` record says so, and the log still verifies (leaves keep only keyed hashes).

    \b
    Example:
      charter audit erase --request-id req_8f2c --reason "erasure request 2026-114"
    """
    settings = resolve(flags)
    store = _store(flags)
    log = AuditLog(store, open_keys(settings.data_dir))
    try:
        found, refs = _external_refs(stored_leaf_bytes(store), request_id)
        if not found:
            raise NotFound(
                f"no audit record has request id {request_id!r}",
                hint="`charter audit search` lists records; retention may have summarised it",
            )
        erased = sum(store.audit_content_erase(ref) for ref in refs)
        log.append_sync(
            Draft(
                kind=RecordKind.ERASURE,
                request_id=request_id,
                reason=reason,
                details={"records": len(found), "refs": len(refs), "erased": erased},
            )
        )
        log.checkpoint()
    finally:
        log.close()
        store.close()
    console.print(
        f"request {escape(request_id)}: {erased} of {len(refs)} stored contents erased "
        f"from {len(found)} records; the erasure is recorded"
    )


def _external_refs(leaves: list[bytes], request_id: str) -> tuple[list[int], list[str]]:
    """The records of one request and the refs of the content they keep outside the log."""
    needle = json.dumps(request_id, ensure_ascii=False).encode()  # as canonical JSON writes it
    found: list[int] = []
    refs: list[str] = []
    for data in leaves:
        if needle not in data:  # a byte test first: parse only the candidates
            continue
        record = parse_leaf(data)
        if record.request_id != request_id or record.kind is RecordKind.ERASURE:
            continue
        found.append(record.index)
        refs += [c.ref for c in record.content if c.form is ContentForm.EXTERNAL and c.ref]
    return found, sorted(set(refs))


@audit.command()
@click.option("--principal", default=None)
@click.option("--decision", default=None)
@click.option("--verdict", "action", default=None, help="allow, redact, escalate or block.")
@click.option("--since", default=None, help="RFC 3339 time, e.g. 2026-11-01T00:00:00Z.")
@click.option("--until", default=None)
@click.option("--limit", default=50, show_default=True)
@_option("database")
def search(
    principal: str | None,
    decision: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    **flags: Any,
) -> None:
    """Find records by principal, decision, verdict and time.

    \b
    Example:
      charter audit search --decision team-budgets --verdict block
    """
    store = _store(flags)
    try:
        records = [json.loads(b) for b in stored_leaf_bytes(store)]
    finally:
        store.close()
    found = [
        r
        for r in records
        if (principal is None or r.get("principal") == principal)
        and (decision is None or decision in r.get("decision_ids", []))
        and (action is None or r.get("action") == action)
        and (since is None or r["time"] >= since)
        and (until is None or r["time"] < until)
    ][-limit:]
    table = Table(title=f"{len(found)} records")
    for column in ("index", "time", "principal", "verdict", "decisions", "reason"):
        table.add_column(column, overflow="fold")
    for r in found:
        table.add_row(
            str(r["index"]),
            r["time"],
            r.get("principal") or "",
            r.get("action") or "",
            ", ".join(r.get("decision_ids", [])),
            escape(r.get("reason") or ""),
        )
    console.print(table)
