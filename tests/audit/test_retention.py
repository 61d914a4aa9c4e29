"""Retention: old records are summarised by signed records and checkpoints, never silently dropped.

Each adversarial test changes the stored log the way someone with write access to the database
could, and shows that verification names what happened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator

import pytest

from charter.audit.checkpoint import SigningKey
from charter.audit.log import (
    RETENTION_LOCK,
    AuditKeys,
    AuditLog,
    Draft,
    stored_checkpoints,
    stored_log,
)
from charter.audit.records import RecordKind, parse_leaf
from charter.audit.retention import RetentionStatement, sign_retention
from charter.audit.verify import FailureKind, PrunedLeaf, VerificationReport, verify_log
from charter.errors import Conflict, InvalidRequest
from charter.storage import Store, open_store
from tests.audit._db import sql

OLD = 20  # records older than the cutoff
NEW = 10  # records younger than it


def draft(i: int) -> Draft:
    return Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}", principal="app", reason=f"r{i}")


@pytest.fixture
def log(store: Store) -> Iterator[AuditLog]:
    audit = AuditLog(store, AuditKeys(SigningKey.generate(), b"k" * 32), log_id="test")
    yield audit
    audit.close()


def fill(log: AuditLog, old: int = OLD, new: int = NEW) -> dt.datetime:
    """Append ``old`` records, then ``new`` younger ones; returns the cutoff between them."""
    for i in range(old):
        log.append_sync(draft(i))
    time.sleep(0.01)
    cutoff = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    for i in range(old, old + new):
        log.append_sync(draft(i))
    log.checkpoint()
    return cutoff


def verify(log: AuditLog) -> VerificationReport:
    return verify_log(
        stored_log(log.store),
        stored_checkpoints(log.store),
        log.keys.signing.public_key,
        log_id=log.log_id,
    )


def kinds(report: VerificationReport) -> set[FailureKind]:
    return {f.kind for f in report.failures}


def test_retention_summarises_old_records_and_the_log_still_verifies(log: AuditLog) -> None:
    cutoff = fill(log)
    hashes_before = log.store.audit_leaf_hashes(0, OLD + NEW)
    result = log.retain(cutoff, retention="400d")
    assert result is not None
    assert (result.pruned_before, result.record_index, result.removed) == (OLD, OLD + NEW, OLD)
    assert result.checkpoint.tree_size == OLD
    leaves = log.store.audit_leaves(0, OLD + NEW + 1)
    assert [leaf.pruned for leaf in leaves] == [True] * OLD + [False] * (NEW + 1)
    assert log.store.audit_leaf_hashes(0, OLD + NEW) == hashes_before  # hashes stay
    report = verify(log)
    assert report.ok, report.summary()
    assert report.summarised == OLD and report.verified_size == OLD + NEW + 1
    assert f"records [0, {OLD}) summarised by retention" in report.summary()


def test_the_retention_record_says_what_was_summarised(log: AuditLog) -> None:
    cutoff = fill(log)
    result = log.retain(cutoff, retention="400d")
    assert result is not None
    (leaf,) = log.store.audit_leaves(result.record_index, result.record_index + 1)
    assert leaf.record_json is not None
    statement = RetentionStatement.from_record(parse_leaf(leaf.record_json.encode()))
    assert statement.pruned_before == OLD
    assert statement.root_hash == result.checkpoint.root_hash
    assert statement.retention == "400d" and statement.log_id == "test"


def test_nothing_old_enough_changes_nothing(log: AuditLog) -> None:
    fill(log, old=0, new=5)
    assert log.retain(dt.datetime.now(dt.UTC) - dt.timedelta(days=400)) is None
    assert log.store.audit_size() == 5
    assert not any(leaf.pruned for leaf in log.store.audit_leaves(0, 5))


def test_a_second_run_extends_the_summary_over_the_first_retention_record(log: AuditLog) -> None:
    first = fill(log, old=8, new=4)
    assert log.retain(first) is not None  # prunes [0, 8); retention record at 12
    time.sleep(0.01)
    second = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    for i in range(3):
        log.append_sync(draft(100 + i))
    result = log.retain(second)
    assert result is not None and result.pruned_before == 13  # the first record is gone too
    assert result.removed == 5
    report = verify(log)
    assert report.ok, report.summary()
    assert report.summarised == 13


def test_retention_refuses_to_prune_a_log_that_does_not_verify(
    log: AuditLog, store_url: str
) -> None:
    """Pins: pruning a tampered log would destroy the evidence of the tampering."""
    cutoff = fill(log)
    sql(
        store_url,
        "UPDATE audit_leaves SET record_json = replace(record_json, 'r3', 'r9') WHERE seq = 3",
    )
    with pytest.raises(Conflict, match="does not verify"):
        log.retain(cutoff)
    assert not any(leaf.pruned for leaf in log.store.audit_leaves(0, OLD + NEW))


def test_retention_waits_its_turn_while_another_replica_applies_it(
    log: AuditLog, store_url: str
) -> None:
    """Replicas share one database: the one holding the retention lock does the work; another
    is told so, and neither verifies the log twice nor appends a second retention record."""
    cutoff = fill(log)
    replica = open_store(store_url)
    try:
        with replica.exclusive(RETENTION_LOCK) as held:
            assert held
            with pytest.raises(Conflict, match="another process") as refused:
                log.retain(cutoff)
            assert refused.value.details["code"] == "retention_busy"
            assert log.store.audit_size() == OLD + NEW  # no retention record
            assert not any(leaf.pruned for leaf in log.store.audit_leaves(0, OLD + NEW))
    finally:
        replica.close()
    result = log.retain(cutoff)  # the lock is free again
    assert result is not None and result.pruned_before == OLD


def test_naive_cutoff_is_refused(log: AuditLog) -> None:
    with pytest.raises(InvalidRequest, match="timezone"):
        log.retain(dt.datetime.now())


# --- adversarial ---------------------------------------------------------------------------------


@pytest.fixture
def retained(log: AuditLog) -> AuditLog:
    """A log of 30 records whose first 20 were summarised, then 5 more records, checkpointed."""
    assert log.retain(fill(log)) is not None
    for i in range(5):
        log.append_sync(draft(200 + i))
    log.checkpoint()
    assert verify(log).ok
    return log


def test_a_changed_leaf_hash_in_the_pruned_range_is_caught(
    retained: AuditLog, store_url: str
) -> None:
    sql(store_url, "UPDATE audit_leaves SET leaf_hash = ? WHERE seq = 7", b"\x07" * 32)
    report = verify(retained)
    assert not report.ok
    assert FailureKind.ROOT_MISMATCH in kinds(report)
    summary = [f for f in report.failures if "retention record" in f.message]
    assert summary and (summary[0].index, summary[0].index_end) == (0, OLD)
    assert report.summarised == 0  # the summary no longer vouches for anything


def test_a_forged_retention_record_does_not_authorise_pruning(
    retained: AuditLog, store_url: str
) -> None:
    """An attacker appends a retention record signed by their own key claiming [0, 27), then
    removes those bodies; the log even checkpoints it, as it would any appended record."""
    size = retained.store.audit_size()
    forged = sign_retention(
        SigningKey.generate(),
        log_id="test",
        pruned_before=27,
        root_hash=b"\x00" * 32,
        cutoff="2030-01-01T00:00:00.000000Z",
        retention="1d",
    )
    index = retained.append_sync(Draft(kind=RecordKind.RETENTION, details=forged.details()))
    assert index == size
    retained.store.audit_prune(27)
    retained.checkpoint()
    report = verify(retained)
    bad = report.of_kind(FailureKind.BAD_RETENTION)
    assert bad and bad[0].index == size and "not trusted" in bad[0].message
    (orphans,) = report.of_kind(FailureKind.PRUNED_WITHOUT_RETENTION)
    assert (orphans.index, orphans.index_end) == (OLD, 27)


def test_a_genuine_retention_statement_cannot_be_stretched(
    retained: AuditLog, store_url: str
) -> None:
    """Copying the real statement but claiming a longer range breaks its signature."""
    (leaf,) = retained.store.audit_leaves(OLD + NEW, OLD + NEW + 1)
    assert leaf.record_json is not None
    real = RetentionStatement.from_record(parse_leaf(leaf.record_json.encode()))
    stretched = dataclasses.replace(real, pruned_before=27)
    index = retained.append_sync(Draft(kind=RecordKind.RETENTION, details=stretched.details()))
    retained.store.audit_prune(27)
    retained.checkpoint()
    report = verify(retained)
    assert [f.index for f in report.of_kind(FailureKind.BAD_RETENTION)] == [index]
    assert "forged or altered" in report.of_kind(FailureKind.BAD_RETENTION)[0].message
    assert report.of_kind(FailureKind.PRUNED_WITHOUT_RETENTION)[0].index == OLD


def test_an_edited_retention_record_is_caught(retained: AuditLog, store_url: str) -> None:
    sql(
        store_url,
        "UPDATE audit_leaves SET record_json = replace(record_json, "
        "'\"pruned_before\":20', '\"pruned_before\":25') WHERE seq = ?",
        OLD + NEW,
    )
    report = verify(retained)
    assert {FailureKind.BAD_RETENTION, FailureKind.ROOT_MISMATCH} <= kinds(report)


def test_a_deleted_record_after_the_retention_point_is_caught(
    retained: AuditLog, store_url: str
) -> None:
    sql(store_url, "DELETE FROM audit_leaves WHERE seq = 24")
    report = verify(retained)
    assert not report.ok
    sequence = report.of_kind(FailureKind.SEQUENCE)
    assert sequence and sequence[0].index == 24


def test_a_body_removed_outside_retention_is_caught(retained: AuditLog, store_url: str) -> None:
    """The hash alone still gives every root, so only the retention rule catches this."""
    sql(store_url, "UPDATE audit_leaves SET record_json = '' WHERE seq IN (22, 23)")
    report = verify(retained)
    assert kinds(report) == {FailureKind.PRUNED_WITHOUT_RETENTION}
    (failure,) = report.failures
    assert (failure.index, failure.index_end) == (22, 24)


def test_a_changed_record_after_the_retention_point_is_caught(
    retained: AuditLog, store_url: str
) -> None:
    sql(
        store_url,
        "UPDATE audit_leaves SET record_json = replace(record_json, 'r25', 'r52') WHERE seq = 25",
    )
    report = verify(retained)
    assert kinds(report) == {FailureKind.ROOT_MISMATCH}
    assert all(f.index is not None and f.index <= 25 < (f.index_end or 0) for f in report.failures)


def test_a_retention_record_placed_before_its_range_is_refused(log: AuditLog) -> None:
    """A summary must follow what it sums: it cannot vouch for records after itself."""
    fill(log, old=3, new=0)
    statement = sign_retention(
        log.keys.signing,
        log_id="test",
        pruned_before=10,
        root_hash=b"\x00" * 32,
        cutoff="2030-01-01T00:00:00.000000Z",
        retention=None,
    )
    log.append_sync(Draft(kind=RecordKind.RETENTION, details=statement.details()))
    log.checkpoint()
    report = verify(log)
    (bad,) = report.of_kind(FailureKind.BAD_RETENTION)
    assert bad.index == 3 and "no larger than the record's own index" in bad.message


def test_verify_log_refuses_a_malformed_pruned_leaf() -> None:
    with pytest.raises(InvalidRequest, match="32-byte"):
        verify_log([PrunedLeaf(b"short")], [], SigningKey.generate().public_key)


# --- the store methods ---------------------------------------------------------------------------


def test_prune_keeps_hashes_and_counts_only_new_removals(log: AuditLog) -> None:
    fill(log, old=4, new=2)
    store = log.store
    hashes = store.audit_leaf_hashes(0, 6)
    assert len(hashes) == 6 and all(len(h) == 32 for h in hashes)
    assert store.audit_leaf_hashes(4, 100) == hashes[4:]
    assert store.audit_prune(3) == 3
    assert store.audit_prune(3) == 0  # already pruned
    assert store.audit_prune(4) == 1
    assert [leaf.record_json is None for leaf in store.audit_leaves(0, 6)] == [True] * 4 + [
        False
    ] * 2
    assert store.audit_leaf_hashes(0, 6) == hashes
    with pytest.raises(InvalidRequest):
        store.audit_prune(-1)
    with pytest.raises(InvalidRequest):
        store.audit_leaf_hashes(3, 1)
