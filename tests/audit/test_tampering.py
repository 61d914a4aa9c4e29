"""Adversarial tests: every kind of tampering with a log or a bundle is detected and located."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from charter.audit.canonical import matches_keyed_hash
from charter.audit.checkpoint import Checkpoint, SigningKey, sign_checkpoint
from charter.audit.merkle import (
    InvalidProof,
    MerkleLevels,
    leaf_hash,
    leaf_hashes,
    root,
    verify_inclusion,
)
from charter.audit.records import AuditRecord, Content, RecordKind, leaf_bytes
from charter.audit.verify import (
    FailureKind,
    VerificationReport,
    build_bundle,
    verify_bundle,
    verify_log,
)
from charter.policy.verdict import Action

KEY = b"content-hash-key-0123456789abcdef"
LOG = "acme-prod"
N = 40
CHECKPOINT_SIZES = (10, 25, 40)


def _make_record(i: int) -> AuditRecord:
    return AuditRecord(
        index=i,
        time=f"2025-03-01T09:{i // 60:02d}:{i % 60:02d}.000000Z",
        kind=RecordKind.VERDICT if i % 5 else RecordKind.APPROVAL,
        principal=f"team:support/user:{i % 7}",
        request_id=f"req-{i:04d}",
        charter_version="sha256:" + "cd" * 32,
        control_ids=("pii-output", "refund-limit"),
        decision_ids=("D-3",),
        action=Action.BLOCK if i % 3 == 0 else Action.ALLOW,
        reason=f"reason {i}",
        content=(
            Content.hashed("input", KEY, f"prompt {i}"),
            Content.external("output", KEY, f"answer for customer {i}", f"blob:{i}"),
        ),
        details={"reviewer": "alice", "amount_cents": i * 100, "enforced": True},
    )


RECORDS = [_make_record(i) for i in range(N)]
LEAVES = [leaf_bytes(r) for r in RECORDS]
SIGNER = SigningKey.generate()
MALLORY = SigningKey.generate()


def _sign(size: int, key: SigningKey = SIGNER, leaves: list[bytes] = LEAVES) -> Checkpoint:
    return sign_checkpoint(
        key,
        log_id=LOG,
        tree_size=size,
        root_hash=root(leaf_hashes(leaves[:size])),
        timestamp=f"2025-03-01T10:00:{size:02d}.000000Z",
    )


CHECKPOINTS = [_sign(s) for s in CHECKPOINT_SIZES]


def _verify(entries: list[Any], checkpoints: list[Checkpoint] = CHECKPOINTS) -> VerificationReport:
    return verify_log(entries, checkpoints, SIGNER.public_key, log_id=LOG)


def _kinds(report: VerificationReport) -> set[FailureKind]:
    return {f.kind for f in report.failures}


def _assert_range_holds(report: VerificationReport, index: int) -> None:
    """Some root mismatch must name a range that contains the tampered index."""
    ranges = [
        (f.index, f.index_end)
        for f in report.of_kind(FailureKind.ROOT_MISMATCH)
        if f.index is not None and f.index_end is not None
    ]
    assert any(lo <= index < hi for lo, hi in ranges), (index, ranges)


# --- the untouched log ---------------------------------------------------------------------------


@pytest.mark.parametrize("entries", [RECORDS, LEAVES], ids=["records", "leaf_bytes"])
def test_an_untouched_log_verifies(entries: list[Any]) -> None:
    report = _verify(entries)
    assert report.ok, report.summary()
    assert report.tree_size == N and report.verified_size == N and report.uncovered == 0
    assert report.checkpoints_verified == 3
    assert report.root_hash == CHECKPOINTS[-1].root_hash
    assert report.summary().startswith("OK")


def test_records_after_the_last_checkpoint_are_counted_as_uncovered() -> None:
    report = _verify(LEAVES, CHECKPOINTS[:2])
    assert report.ok and report.verified_size == 25 and report.uncovered == 15


# --- changed bytes -------------------------------------------------------------------------------


def _field_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte span of each top-level field's value in a canonical leaf."""
    spans = {}
    for name in json.loads(data):
        key = f'"{name}":'.encode()
        start = data.index(key) + len(key)
        spans[name] = (start, start + len(json.dumps(json.loads(data)[name])))
    return spans


FIELDS = sorted(_field_spans(LEAVES[0]))


def test_every_field_is_covered_by_the_byte_tampering_test() -> None:
    assert set(FIELDS) == set(RECORDS[0].to_dict())


@pytest.mark.parametrize("field", FIELDS)
def test_a_changed_byte_in_any_field_of_any_record_is_detected(field: str) -> None:
    for i in range(N):
        start, end = _field_spans(LEAVES[i])[field]
        for pos in {start, (start + end) // 2, end - 1}:
            tampered = list(LEAVES)
            data = bytearray(tampered[i])
            data[pos] ^= 0x01
            tampered[i] = bytes(data)
            report = _verify(tampered)
            assert not report.ok, (field, i, pos)
            # Exact when the index field itself was hit, a range between checkpoints otherwise.
            assert report.first_bad_index is not None and report.first_bad_index <= i
            if FailureKind.SEQUENCE not in _kinds(report):
                _assert_range_holds(report, i)


@pytest.mark.parametrize(
    "change",
    [
        {"reason": "nothing to see"},
        {"action": Action.ALLOW},
        {"principal": "team:other"},
        {"decision_ids": ()},
        {"content": ()},
        {"details": {"reviewer": "mallory", "amount_cents": 0, "enforced": True}},
    ],
)
def test_a_changed_record_object_is_detected(change: dict[str, Any]) -> None:
    tampered = list(RECORDS)
    tampered[12] = dataclasses.replace(RECORDS[12], **change)
    report = _verify(tampered)
    assert _kinds(report) == {FailureKind.ROOT_MISMATCH}
    # Checkpoint 10 still matches, so the change is in [10, 25); 40 fails too, from 10.
    assert report.first_bad_index == 10
    assert report.first_bad_checkpoint == 1
    _assert_range_holds(report, 12)


# --- deleted, inserted, swapped, truncated ------------------------------------------------------


@pytest.mark.parametrize("i", [0, 9, 10, 24, 39])
def test_a_deleted_record_is_detected_at_its_index(i: int) -> None:
    tampered = LEAVES[:i] + LEAVES[i + 1 :]
    report = _verify(tampered)
    assert report.first_bad_index is not None and report.first_bad_index <= i
    sequence = report.of_kind(FailureKind.SEQUENCE)
    if i < N - 1:
        assert sequence[0].index == i and "deleted" in sequence[0].message
    # The last checkpoint now covers more records than the log holds.
    assert FailureKind.TRUNCATED in _kinds(report)


@pytest.mark.parametrize("i", [0, 5, 17, 39])
def test_an_inserted_record_is_detected(i: int) -> None:
    forged = dataclasses.replace(RECORDS[i], reason="inserted later")
    tampered = [*RECORDS[:i], forged, *RECORDS[i:]]
    report = _verify(tampered)
    sequence = report.of_kind(FailureKind.SEQUENCE)
    assert sequence[0].index == i + 1 and "inserted" in sequence[0].message
    _assert_range_holds(report, i)


def test_an_inserted_record_with_renumbered_successors_is_detected() -> None:
    forged = dataclasses.replace(RECORDS[17], reason="inserted later")
    renumbered = [dataclasses.replace(r, index=r.index + 1) for r in RECORDS[17:]]
    report = _verify([*RECORDS[:17], forged, *renumbered])
    assert FailureKind.SEQUENCE not in _kinds(report)  # indexes look perfect...
    _assert_range_holds(report, 17)  # ...but the signed roots do not


@pytest.mark.parametrize("i", [0, 9, 30, 38])
def test_two_swapped_records_are_detected(i: int) -> None:
    tampered = list(LEAVES)
    tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
    report = _verify(tampered)
    assert [f.index for f in report.of_kind(FailureKind.SEQUENCE)] == [i, i + 1]
    assert report.first_bad_index is not None and report.first_bad_index <= i


def test_swapped_records_with_swapped_indexes_are_detected() -> None:
    tampered = list(RECORDS)
    a, b = RECORDS[30], RECORDS[31]
    tampered[30], tampered[31] = (
        dataclasses.replace(b, index=30),
        dataclasses.replace(a, index=31),
    )
    report = _verify(tampered)
    assert _kinds(report) == {FailureKind.ROOT_MISMATCH}
    _assert_range_holds(report, 30)


@pytest.mark.parametrize("keep", [0, 12, 25, 39])
def test_a_truncated_log_is_detected(keep: int) -> None:
    report = _verify(LEAVES[:keep])
    truncated = report.of_kind(FailureKind.TRUNCATED)
    assert truncated and truncated[0].index == keep
    assert truncated[-1].index_end == N
    assert report.first_bad_checkpoint == next(
        pos for pos, size in enumerate(CHECKPOINT_SIZES) if size > keep
    )


# --- checkpoints ---------------------------------------------------------------------------------


def test_a_forged_checkpoint_is_detected() -> None:
    # Someone rewrote record 30 and "updated" the last checkpoint's root to match.
    tampered = list(LEAVES)
    tampered[30] = leaf_bytes(dataclasses.replace(RECORDS[30], reason="rewritten"))
    forged = dataclasses.replace(CHECKPOINTS[2], root_hash=root(leaf_hashes(tampered)))
    report = _verify(tampered, [*CHECKPOINTS[:2], forged])
    assert report.of_kind(FailureKind.BAD_SIGNATURE)[0].checkpoint == 2
    assert report.verified_size == 25 and not report.ok


def test_a_checkpoint_signed_by_another_key_is_detected() -> None:
    tampered = list(LEAVES)
    tampered[30] = leaf_bytes(dataclasses.replace(RECORDS[30], reason="rewritten"))
    resigned = _sign(40, MALLORY, tampered)
    report = _verify(tampered, [*CHECKPOINTS[:2], resigned])
    unknown = report.of_kind(FailureKind.UNKNOWN_KEY)
    assert unknown[0].checkpoint == 2 and MALLORY.key_id in unknown[0].message
    # Claiming the real key id does not help either.
    impostor = dataclasses.replace(resigned, key_id=SIGNER.key_id)
    assert _kinds(_verify(tampered, [*CHECKPOINTS[:2], impostor])) == {FailureKind.BAD_SIGNATURE}


def test_a_checkpoint_of_another_log_is_detected() -> None:
    other = sign_checkpoint(
        SIGNER, log_id="acme-staging", tree_size=10, root_hash=CHECKPOINTS[0].root_hash
    )
    report = _verify(LEAVES, [*CHECKPOINTS, other])
    assert report.of_kind(FailureKind.WRONG_LOG)[0].checkpoint == 3


def test_a_log_that_signed_two_histories_is_caught() -> None:
    lie = sign_checkpoint(SIGNER, log_id=LOG, tree_size=10, root_hash=CHECKPOINTS[2].root_hash)
    report = _verify(LEAVES, [*CHECKPOINTS, lie])
    assert report.of_kind(FailureKind.EQUIVOCATION)[0].checkpoint == 3


def test_records_without_any_trusted_checkpoint_do_not_verify() -> None:
    assert _kinds(_verify(LEAVES, [])) == {FailureKind.NO_CHECKPOINT}
    assert _verify([], []).ok


def test_a_malformed_leaf_is_located() -> None:
    tampered = list(LEAVES)
    tampered[3] = b"{not json"
    report = _verify(tampered)
    assert report.of_kind(FailureKind.MALFORMED_RECORD)[0].index == 3
    assert "FAILED" in report.summary() and "record 3" in report.summary()


def test_rotated_keys_verify_when_the_verifier_holds_both() -> None:
    new_key = SigningKey.generate()
    checkpoints = [*CHECKPOINTS[:2], _sign(40, new_key)]
    assert verify_log(LEAVES, checkpoints, [SIGNER.public_key, new_key.public_key]).ok
    report = verify_log(LEAVES, checkpoints, new_key.public_key)
    assert {f.checkpoint for f in report.of_kind(FailureKind.UNKNOWN_KEY)} == {0, 1}


def test_erasing_external_content_leaves_the_log_valid() -> None:
    store = {f"blob:{i}": f"answer for customer {i}" for i in range(N)}
    ref = RECORDS[7].content[1]
    assert ref.ref is not None
    assert matches_keyed_hash(KEY, store[ref.ref], ref.value)  # matched while it exists
    del store[ref.ref]  # an erasure request: the content goes, the leaf stays
    assert _verify(LEAVES).ok


# --- inclusion of a record that is not in the tree ----------------------------------------------


def test_a_proof_for_a_record_not_in_the_tree_is_rejected() -> None:
    levels = MerkleLevels(leaf_hashes(LEAVES))
    outsider = leaf_bytes(dataclasses.replace(RECORDS[5], reason="never logged"))
    with pytest.raises(InvalidProof, match="not in the tree"):
        verify_inclusion(
            leaf_hash(outsider), 5, N, levels.inclusion_proof(5), CHECKPOINTS[2].root_hash
        )
    # The genuine record with the same proof verifies.
    verify_inclusion(
        leaf_hash(LEAVES[5]), 5, N, levels.inclusion_proof(5), CHECKPOINTS[2].root_hash
    )


# --- bundles -------------------------------------------------------------------------------------


def _roundtrip(bundle: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(bundle))
    return loaded


def test_a_complete_bundle_verifies_offline_with_only_the_public_key() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key))
    report = verify_bundle(bundle, SIGNER.public_key)
    assert report.ok, report.summary()
    assert report.verified_size == N


@pytest.mark.parametrize(
    ("path", "value"),
    [(("records", 12, "reason"), "edited"), (("records", 30, "details", "reviewer"), "mallory")],
)
def test_a_tampered_complete_bundle_fails(path: tuple[Any, ...], value: Any) -> None:
    bundle = _roundtrip(build_bundle(LEAVES, CHECKPOINTS, SIGNER.public_key))
    target = bundle
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    report = verify_bundle(bundle, SIGNER.public_key)
    _assert_range_holds(report, path[1])


def test_a_complete_bundle_with_a_deleted_record_fails() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key))
    del bundle["records"][20]
    report = verify_bundle(bundle, SIGNER.public_key)
    assert report.of_kind(FailureKind.SEQUENCE)[0].index == 20


def test_a_selective_bundle_proves_its_records_only() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key, proofs_for=[3, 17]))
    assert [r["index"] for r in bundle["records"]] == [3, 17]
    report = verify_bundle(bundle, SIGNER.public_key)
    assert report.ok, report.summary()
    assert report.tree_size == N


def test_a_tampered_record_in_a_selective_bundle_fails_its_proof() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key, proofs_for=[3, 17]))
    bundle["records"][1]["action"] = (
        "allow" if bundle["records"][1]["action"] != "allow" else "block"
    )
    report = verify_bundle(bundle, SIGNER.public_key)
    assert [f.index for f in report.of_kind(FailureKind.BAD_PROOF)] == [17]


def test_a_record_not_in_the_log_cannot_borrow_a_proof() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key, proofs_for=[3]))
    outsider = dataclasses.replace(RECORDS[3], reason="never logged").to_dict()
    bundle["records"] = [outsider]
    report = verify_bundle(bundle, SIGNER.public_key)
    assert report.of_kind(FailureKind.BAD_PROOF)[0].index == 3


def test_a_selective_bundle_with_a_broken_consistency_proof_fails() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key, proofs_for=[3]))
    proof = bundle["consistency"][0]["proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]
    assert FailureKind.BAD_PROOF in _kinds(verify_bundle(bundle, SIGNER.public_key))


def test_a_bundle_checked_with_another_key_fails() -> None:
    bundle = _roundtrip(build_bundle(RECORDS, CHECKPOINTS, SIGNER.public_key, proofs_for=[3]))
    kinds = _kinds(verify_bundle(bundle, MALLORY.public_key))
    assert {FailureKind.UNKNOWN_KEY, FailureKind.NO_CHECKPOINT} <= kinds


def test_a_bundle_cannot_prove_records_no_checkpoint_covers() -> None:
    from charter.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="not covered"):
        build_bundle(RECORDS, CHECKPOINTS[:1], SIGNER.public_key, proofs_for=[12])


def test_a_detail_named_index_does_not_confuse_the_sequence_check() -> None:
    # Regression: leaf bytes are scanned for the top-level "index" key, not a nested one.
    records = [dataclasses.replace(r, details={"index": 99}) for r in RECORDS[:4]]
    leaves = [leaf_bytes(r) for r in records]
    checkpoint = sign_checkpoint(
        SIGNER, log_id=LOG, tree_size=4, root_hash=root(leaf_hashes(leaves))
    )
    assert _verify(leaves, [checkpoint]).ok
