"""`charter audit`: verify the log, prove a record, export a bundle, sign a checkpoint, search."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charter.audit.checkpoint import load_public_key, public_key_path
from charter.audit.log import (
    SIGNING_KEY_FILE,
    AuditLog,
    open_keys,
    stored_checkpoints,
    stored_leaf_bytes,
)
from charter.audit.merkle import MerkleLevels, leaf_hash
from charter.audit.verify import build_bundle, verify_bundle, verify_log
from charter.errors import NotFound
from charter.options import setting_option as _option
from charter.settings import resolve
from charter.storage import Store, open_store

console = Console(highlight=False)


def _store(flags: dict[str, Any]) -> Store:
    store = open_store(resolve(flags).database)
    store.migrate()
    return store


def _public_key(flags: dict[str, Any], given: str | None) -> Any:
    path = (
        Path(given) if given else public_key_path(Path(resolve(flags).data_dir) / SIGNING_KEY_FILE)
    )
    return load_public_key(path)


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit trail: verify, prove, export, checkpoint, search."""


@audit.command()
@click.option("--public-key", default=None, help="The public key to trust (default: data dir's).")
@_option("database")
@_option("data_dir")
def verify(public_key: str | None, **flags: Any) -> None:
    """Verify every record against the signed checkpoints; exit 1 on any tampering.

    \b
    Example:
      charter audit verify --database sqlite:///.charter/charter.db
    """
    store = _store(flags)
    try:
        report = verify_log(
            stored_leaf_bytes(store), stored_checkpoints(store), _public_key(flags, public_key)
        )
    finally:
        store.close()
    if report.ok:
        console.print(f"[green]ok[/]: {report.summary()}")
    else:
        console.print(f"[bold red]FAILED[/]: {escape(report.summary())}")
        for failure in report.failures:
            console.print(f"  - {escape(str(failure))}")
    sys.exit(0 if report.ok else 1)


@audit.command()
@click.argument("index", type=int)
@_option("database")
def prove(index: int, **flags: Any) -> None:
    """Print a record and its inclusion proof against the latest checkpoint (JSON).

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
        leaves = stored_leaf_bytes(store)[: latest.tree_size]
    finally:
        store.close()
    levels = MerkleLevels([leaf_hash(b) for b in leaves])
    proof = levels.inclusion_proof(index, latest.tree_size)
    click.echo(
        json.dumps(
            {
                "record": json.loads(leaves[index]),
                "leaf_hash": leaf_hash(leaves[index]).hex(),
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
            stored_leaf_bytes(store),
            stored_checkpoints(store),
            _public_key(flags, None),
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
