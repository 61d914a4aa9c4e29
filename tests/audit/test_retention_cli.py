"""`charter audit retain`, `erase` and `verify --from-checkpoint`, end to end on both backends,
and the audit control that makes the gateway apply the charter's retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from charter.audit.checkpoint import SigningKey
from charter.audit.control import apply_retention, gaps, retention_period, run_retention
from charter.audit.log import (
    RETENTION_LOCK,
    AuditKeys,
    AuditLog,
    Draft,
    open_keys,
    stored_checkpoints,
    stored_log,
)
from charter.audit.merkle import verify_inclusion
from charter.audit.records import Content, RecordKind, parse_leaf
from charter.audit.verify import PrunedLeaf, verify_log
from charter.cli import main
from charter.document.loader import load_charter, load_charter_text
from charter.storage import open_store
from tests.audit._db import sql

EXAMPLE = "examples/support-desk/charter.yaml"


def run(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, ["audit", *args])


def test_retain_erase_and_incremental_verify_from_the_command_line(
    store_url: str, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    where = ["--database", store_url, "--data-dir", state]
    store = open_store(store_url)
    store.migrate()
    log = AuditLog(store, open_keys(state))
    for i in range(5):
        log.append_sync(Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}", reason="old"))
    time.sleep(1.1)  # the shortest retention a charter can say is 1s
    key = log.keys.content
    for i in range(5, 8):
        content = (Content.external("input", key, f"my email is {i}@example.com", f"c-{i}"),)
        store.audit_content_put(f"c-{i}", f"my email is {i}@example.com")
        log.append_sync(Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}", content=content))
    log.close()  # signs a checkpoint of size 8

    retained = run("retain", "--older-than", "1s", *where)
    assert retained.exit_code == 0, retained.output
    assert "records [0, 5) summarised" in retained.output

    ok = run("verify", *where)
    assert ok.exit_code == 0, ok.output
    assert "records [0, 5) summarised by retention" in ok.output

    proof = run("prove", "2", "--database", store_url)
    assert proof.exit_code == 0, proof.output
    proven = json.loads(proof.output)
    assert proven["record"] is None and proven["summarised"] is True
    verify_inclusion(
        bytes.fromhex(proven["leaf_hash"]),
        2,
        proven["checkpoint"]["tree_size"],
        [bytes.fromhex(h) for h in proven["inclusion_proof"]],
        bytes.fromhex(proven["checkpoint"]["root_hash"]),
    )

    bundle = tmp_path / "bundle.json"
    assert run("export", "-o", str(bundle), *where).exit_code == 0
    assert len(json.loads(bundle.read_text())["summarised_leaf_hashes"]) == 5
    offline = run(
        "verify-bundle", str(bundle), "--public-key", f"{state}/audit-signing-key.pem.pub"
    )
    assert offline.exit_code == 0, offline.output

    erased = run("erase", "--request-id", "req-6", *where)
    assert erased.exit_code == 0, erased.output
    assert "1 of 1 stored contents erased" in erased.output
    assert store.audit_content_get("c-6") is None
    assert store.audit_content_get("c-7") is not None
    after = run("verify", *where)
    assert after.exit_code == 0, after.output  # the leaf kept only the keyed hash
    last = stored_log(store)[-1]
    assert not isinstance(last, PrunedLeaf)
    erasure = parse_leaf(last)
    assert erasure.kind is RecordKind.ERASURE and erasure.request_id == "req-6"

    latest = max(c.size for c in store.checkpoints())
    assert run("verify", "--from-checkpoint", "5", *where).exit_code == 0
    assert run("verify", "--from-checkpoint", str(latest), *where).exit_code == 0
    missing = run("verify", "--from-checkpoint", "4", *where)
    assert missing.exit_code != 0 and "no checkpoint of tree size 4" in missing.output

    store.close()
    with open_store(store_url) as again:
        raw = again.audit_leaves(6, 7)[0].record_json
    assert raw is not None
    tampered = raw.replace("req-6", "req-X")
    sql(store_url, "UPDATE audit_leaves SET record_json = ? WHERE seq = 6", tampered)
    bad = run("verify", "--from-checkpoint", "5", *where)
    assert bad.exit_code == 1 and "FAILED" in bad.output


def test_erase_of_an_unknown_request_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    result = run("erase", "--request-id", "nope", "--database", url, "--data-dir", str(tmp_path))
    assert result.exit_code != 0 and "no audit record has request id 'nope'" in result.output


def test_retain_takes_the_period_from_the_charter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    where = ["--database", url, "--data-dir", str(tmp_path / "state")]
    result = run("retain", "--charter", EXAMPLE, *where)
    assert result.exit_code == 0, result.output
    assert "no record is older than 400d" in result.output
    bad = run("retain", "--older-than", "400 days", *where)
    assert bad.exit_code != 0 and "not a duration" in bad.output


# --- the audit control ---------------------------------------------------------------------------

CHARTER = """\
format: 1
organization: Acme
decisions:
  - id: kept
    statement: We keep an audit trail.
    owner: ciso
    risk: low
    review_by: 2027-01-31
    enforced_by: [a, b]
controls:
  - {id: a, kind: audit, serves: [kept], settings: {retention: 30d}}
  - {id: b, kind: audit, serves: [kept], settings: {retention: 2w}}
principals:
  - {id: team, kind: team}
providers:
  - id: sim
    kind: simulated
    models:
      - {name: m1, price: {input_per_mtok: 1, output_per_mtok: 2}}
"""


def test_retention_is_enforced_so_the_example_may_set_it() -> None:
    loaded = load_charter(EXAMPLE)
    assert loaded.errors == []
    assert retention_period(loaded.require()) == "400d"
    audit_control = next(c for c in loaded.require().controls if c.kind == "audit")
    assert gaps(audit_control.settings) == []


def test_the_longest_enforced_retention_wins() -> None:
    charter = load_charter_text(CHARTER).require()
    assert retention_period(charter) == "30d"
    shadowed = CHARTER.replace(
        "kind: audit, serves: [kept], settings: {retention: 30d}",
        "kind: audit, mode: shadow, serves: [kept], settings: {retention: 30d}",
    )
    assert retention_period(load_charter_text(shadowed).require()) == "2w"


def test_the_gateway_loop_skips_a_run_another_replica_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that finds the retention lock taken skips that run and keeps its loop going."""
    url = f"sqlite:///{tmp_path}/c.db"
    store = open_store(url)
    store.migrate()
    log = AuditLog(store, AuditKeys(SigningKey.generate(), b"k" * 32))
    for i in range(4):
        log.append_sync(Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}"))
    charter = load_charter_text(CHARTER.replace("30d", "1s").replace("2w", "1s")).require()
    time.sleep(1.1)
    replica = open_store(url)

    async def loop() -> None:
        task = asyncio.create_task(run_retention(log, charter, every_s=0.05))
        try:
            with replica.exclusive(RETENTION_LOCK) as held:
                assert held
                await asyncio.sleep(0.3)  # several runs, each finding the lock taken
                assert not task.done()
                assert not store.audit_leaves(0, 1)[0].pruned
            for _ in range(100):  # released: the next run does the work
                await asyncio.sleep(0.05)
                if store.audit_leaves(0, 1)[0].pruned:
                    return
            pytest.fail("the retention loop did not resume after the lock was released")
        finally:
            task.cancel()

    with caplog.at_level(logging.INFO, logger="charter.audit.control"):
        asyncio.run(loop())
    assert "skipped: another process" in caplog.text
    kinds = [
        parse_leaf(leaf.record_json.encode()).kind
        for leaf in store.audit_leaves(0, store.audit_size())
        if leaf.record_json is not None
    ]
    assert kinds.count(RecordKind.RETENTION) == 1
    replica.close()
    log.close()
    store.close()


def test_the_gateway_loop_applies_the_charter_retention(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    store.migrate()
    log = AuditLog(store, AuditKeys(SigningKey.generate(), b"k" * 32))
    for i in range(4):
        log.append_sync(Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}"))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    result = apply_retention(log, "30d", now=later)
    assert result is not None and result.pruned_before == 4

    for i in range(3):
        log.append_sync(Draft(kind=RecordKind.VERDICT, request_id=f"new-{i}"))
    charter = load_charter_text(CHARTER.replace("30d", "1s").replace("2w", "1s")).require()

    async def loop() -> None:
        task = asyncio.create_task(run_retention(log, charter, every_s=0.05))
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if store.audit_leaves(6, 7)[0].pruned:
                    return
            pytest.fail("the retention loop did not summarise the records")
        finally:
            task.cancel()

    time.sleep(1.1)
    asyncio.run(loop())
    report = verify_log(stored_log(store), stored_checkpoints(store), log.keys.signing.public_key)
    assert report.ok and report.summarised == 8, report.summary()  # the first summary too
    log.close()
    store.close()
