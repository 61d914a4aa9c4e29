"""Verifying from a trusted checkpoint on: only the newer records are read, nothing is missed."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charter.audit.checkpoint import SigningKey, sign_checkpoint
from charter.audit.merkle import (
    MerkleLevels,
    leaf_hash,
    peaks_at,
    range_consistency_proof,
    verify_consistency,
)
from charter.audit.records import AuditRecord, RecordKind, leaf_bytes
from charter.audit.verify import FailureKind, PrunedLeaf, verify_log, verify_log_from

KEY = SigningKey.generate()


def leaves(n: int) -> list[bytes]:
    return [
        leaf_bytes(
            AuditRecord(
                index=i,
                time="2026-01-01T00:00:00.000000Z",
                kind=RecordKind.VERDICT,
                reason=f"r{i}",
            )
        )
        for i in range(n)
    ]


def checkpoints_at(data: list[bytes], *sizes: int) -> list:  # type: ignore[type-arg]
    levels = MerkleLevels([leaf_hash(b) for b in data])
    return [sign_checkpoint(KEY, log_id="t", tree_size=s, root_hash=levels.root(s)) for s in sizes]


@given(st.integers(0, 300), st.integers(0, 300))
def test_range_consistency_proof_is_the_rfc_proof(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    hashes = [os.urandom(32) for _ in range(new)]
    proof = range_consistency_proof(peaks_at(hashes, [old])[old], old, hashes[old:])
    levels = MerkleLevels(hashes)
    assert proof == levels.consistency_proof(old, new)
    if new:
        verify_consistency(old, new, levels.root(old), levels.root(new), proof)


def test_range_consistency_proof_wants_the_peaks_of_the_old_tree() -> None:
    with pytest.raises(Exception, match="subtree hashes"):
        range_consistency_proof([], 5, [os.urandom(32)])


def test_from_a_checkpoint_reads_only_newer_records() -> None:
    data = leaves(50)
    cps = checkpoints_at(data, 16, 37, 50)
    hashes = [leaf_hash(b) for b in data]
    report = verify_log_from(hashes[:37], data[37:], cps, KEY.public_key)
    assert report.ok, report.summary()
    assert report.verified_from == 37 and report.verified_size == 50
    assert report.root_hash == verify_log(data, cps, KEY.public_key).root_hash
    assert "not re-read" in report.summary()


def test_a_changed_record_after_the_trusted_checkpoint_is_caught() -> None:
    data = leaves(50)
    cps = checkpoints_at(data, 37, 50)
    hashes = [leaf_hash(b) for b in data]
    tampered = list(data)
    tampered[45] = tampered[45].replace(b'"r45"', b'"r99"')
    report = verify_log_from(hashes[:37], tampered[37:], cps, KEY.public_key)
    assert {f.kind for f in report.failures} == {FailureKind.ROOT_MISMATCH, FailureKind.BAD_PROOF}
    mismatch = report.of_kind(FailureKind.ROOT_MISMATCH)[0]
    assert (mismatch.index, mismatch.index_end) == (37, 50)


def test_a_changed_leaf_hash_below_the_trusted_checkpoint_is_caught() -> None:
    data = leaves(50)
    cps = checkpoints_at(data, 37, 50)
    hashes = [leaf_hash(b) for b in data]
    hashes[3] = b"\x03" * 32
    report = verify_log_from(hashes[:37], data[37:], cps, KEY.public_key)
    trusted = [f for f in report.failures if "trusted checkpoint" in f.message]
    assert trusted and (trusted[0].index, trusted[0].index_end) == (0, 37)


def test_a_deleted_record_after_the_trusted_checkpoint_is_caught() -> None:
    data = leaves(50)
    cps = checkpoints_at(data, 37, 50)
    hashes = [leaf_hash(b) for b in data]
    report = verify_log_from(hashes[:37], data[37:40] + data[41:], cps, KEY.public_key)
    assert report.of_kind(FailureKind.SEQUENCE)[0].index == 40
    assert report.of_kind(FailureKind.TRUNCATED)


def test_without_a_trusted_checkpoint_at_that_size_nothing_is_vouched_for() -> None:
    data = leaves(20)
    cps = checkpoints_at(data, 20)
    hashes = [leaf_hash(b) for b in data]
    report = verify_log_from(hashes[:10], data[10:], cps, KEY.public_key)
    (missing,) = report.of_kind(FailureKind.NO_CHECKPOINT)
    assert "size 10" in missing.message
    other = sign_checkpoint(SigningKey.generate(), log_id="t", tree_size=10, root_hash=hashes[0])
    report = verify_log_from(hashes[:10], data[10:], [other, *cps], KEY.public_key)
    assert report.of_kind(FailureKind.NO_CHECKPOINT) and report.of_kind(FailureKind.UNKNOWN_KEY)


def test_pruned_leaves_after_the_trusted_checkpoint_need_a_retention_record() -> None:
    data = leaves(30)
    cps = checkpoints_at(data, 10, 30)
    hashes = [leaf_hash(b) for b in data]
    entries = [PrunedLeaf(h) for h in hashes[10:15]] + data[15:]
    report = verify_log_from(hashes[:10], entries, cps, KEY.public_key)
    (orphans,) = report.of_kind(FailureKind.PRUNED_WITHOUT_RETENTION)
    assert (orphans.index, orphans.index_end) == (10, 15)
