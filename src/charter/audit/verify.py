"""Verification of an audit log against its signed checkpoints, and offline export bundles.

``verify_log`` recomputes the tree from the records and checks every checkpoint's signature and
root; the report says what failed and where, so an auditor knows which records to look at.
``build_bundle`` and ``verify_bundle`` carry records, checkpoints and proofs to someone who holds
only the public key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from charter.audit.canonical import canonical_json
from charter.audit.checkpoint import (
    Checkpoint,
    CheckpointInvalid,
    PublicKeys,
    key_id,
    keyring,
    public_key_to_b64,
    verify_checkpoint,
)
from charter.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    InvalidProof,
    MerkleLevels,
    MerkleTree,
    fold_peaks,
    leaf_hash,
    leaf_hashes,
    peaks_at,
    range_consistency_proof,
    roots_at,
    verify_consistency,
    verify_inclusion,
)
from charter.audit.records import AuditRecord, RecordKind, leaf_bytes, parse_leaf
from charter.audit.retention import RetentionInvalid, RetentionStatement, verify_retention
from charter.errors import InvalidRequest

BUNDLE_FORMAT = "charter.audit.bundle/v1"
_MAX_DETAILED = 20  # failures of one kind listed one by one; the rest are counted


class FailureKind(StrEnum):
    """What verification found wrong."""

    MALFORMED_RECORD = "malformed_record"  # a leaf is not a valid record
    SEQUENCE = "sequence"  # a record sits at the wrong position: deleted, inserted or swapped
    ROOT_MISMATCH = "root_mismatch"  # the records differ from what a checkpoint signed
    TRUNCATED = "truncated"  # a checkpoint covers more records than the log holds
    MALFORMED_CHECKPOINT = "malformed_checkpoint"
    UNKNOWN_KEY = "unknown_key"  # a checkpoint signed by a key the verifier does not trust
    BAD_SIGNATURE = "bad_signature"  # a forged or altered checkpoint
    WRONG_LOG = "wrong_log"  # a checkpoint of another log
    EQUIVOCATION = "equivocation"  # validly signed checkpoints that disagree with each other
    NO_CHECKPOINT = "no_checkpoint"  # records exist but no trusted checkpoint vouches for them
    BAD_PROOF = "bad_proof"  # an inclusion or consistency proof in a bundle does not hold
    MALFORMED_BUNDLE = "malformed_bundle"
    BAD_RETENTION = "bad_retention"  # a retention record that is malformed, forged or misplaced
    PRUNED_WITHOUT_RETENTION = "pruned_without_retention"  # a body gone, no retention covers it


@dataclass(frozen=True, slots=True)
class PrunedLeaf:
    """A log entry whose record body retention removed: only the stored leaf hash remains.

    Verification takes the hash as given; the signed roots still catch any change to it, and
    a valid ``retention`` record must cover the position (see docs/audit.md, Retention).
    """

    leaf_hash: bytes


LogEntry = AuditRecord | bytes | PrunedLeaf
"""One position of the log as verification takes it: a record, its leaf bytes, or a pruned leaf."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing verification found wrong, with where it is.

    ``index`` is the first record affected. When only a range is known (a checkpoint's root does
    not match, so some record in ``[index, index_end)`` changed) ``index_end`` closes the range.
    ``checkpoint`` is the position of the checkpoint involved, in the order the caller passed them.
    """

    kind: FailureKind
    message: str
    index: int | None = None
    index_end: int | None = None
    checkpoint: int | None = None

    def __str__(self) -> str:
        where = []
        if self.index is not None:
            where.append(
                f"records [{self.index}, {self.index_end})"
                if self.index_end is not None
                else f"record {self.index}"
            )
        if self.checkpoint is not None:
            where.append(f"checkpoint #{self.checkpoint}")
        return (
            f"{self.kind.value} at {', '.join(where)}: {self.message}"
            if where
            else (f"{self.kind.value}: {self.message}")
        )


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of verifying a log or a bundle; ``ok`` only when nothing at all failed."""

    tree_size: int
    root_hash: bytes
    checkpoints_total: int
    checkpoints_verified: int
    verified_size: int
    failures: tuple[Failure, ...]
    suppressed: int = 0
    summarised: int = 0
    verified_from: int = 0

    @property
    def ok(self) -> bool:
        """True when every record and checkpoint checked out."""
        return not self.failures

    @property
    def uncovered(self) -> int:
        """Records after the largest verified checkpoint: intact as far as anyone can tell, but
        not yet vouched for by a signature (truncating them could not be detected)."""
        return max(self.tree_size - self.verified_size, 0)

    @property
    def first_bad_index(self) -> int | None:
        """The lowest record index any failure points at (a range start if only that is known)."""
        found = [f.index for f in self.failures if f.index is not None]
        return min(found) if found else None

    @property
    def first_bad_checkpoint(self) -> int | None:
        """The lowest position of a checkpoint that failed, in the order given."""
        found = [f.checkpoint for f in self.failures if f.checkpoint is not None]
        return min(found) if found else None

    def of_kind(self, kind: FailureKind) -> tuple[Failure, ...]:
        """The failures of one kind."""
        return tuple(f for f in self.failures if f.kind is kind)

    def summary(self) -> str:
        """A human-readable account, one line per failure."""
        head = (
            f"{self.tree_size} records, root {self.root_hash.hex()}, "
            f"{self.checkpoints_verified}/{self.checkpoints_total} checkpoints verified, "
            f"records [0, {self.verified_size}) vouched for"
        )
        if self.verified_from:
            head += (
                f"; records [0, {self.verified_from}) taken from the trusted checkpoint of size "
                f"{self.verified_from}, not re-read"
            )
        if self.summarised:
            head += f"; records [0, {self.summarised}) summarised by retention (bodies removed)"
        if self.ok:
            tail = f"; {self.uncovered} newer records await a checkpoint" if self.uncovered else ""
            return f"OK: {head}{tail}"
        lines = [f"FAILED: {head}"] + [f"  - {f}" for f in self.failures]
        if self.suppressed:
            lines.append(f"  ... and {self.suppressed} more failures of the kinds above")
        return "\n".join(lines)


_CHECKPOINT_FAILURES = {
    "malformed": FailureKind.MALFORMED_CHECKPOINT,
    "unknown_key": FailureKind.UNKNOWN_KEY,
    "bad_signature": FailureKind.BAD_SIGNATURE,
}


class _Failures:
    """Collects failures, listing the first few of each kind and counting the rest."""

    def __init__(self) -> None:
        self.items: list[Failure] = []
        self.suppressed = 0
        self._per_kind: dict[FailureKind, int] = {}

    def add(self, failure: Failure) -> None:
        seen = self._per_kind.get(failure.kind, 0)
        self._per_kind[failure.kind] = seen + 1
        if seen < _MAX_DETAILED:
            self.items.append(failure)
        else:
            self.suppressed += 1


def _leaf_and_index(item: LogEntry, position: int, out: _Failures) -> bytes | PrunedLeaf:
    """The leaf bytes of one entry, noting a malformed leaf or one at the wrong position."""
    index: int | None
    if isinstance(item, PrunedLeaf):
        if not isinstance(item.leaf_hash, bytes) or len(item.leaf_hash) != HASH_SIZE:
            raise InvalidRequest(
                f"entry {position} is a pruned leaf without a {HASH_SIZE}-byte leaf hash",
                hint="pass the leaf hash as stored",
            )
        return item
    if isinstance(item, AuditRecord):
        data, index = leaf_bytes(item), item.index
    elif isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        index = _index_in_leaf(data)
        if index is None:
            out.add(
                Failure(
                    FailureKind.MALFORMED_RECORD,
                    "leaf is not a canonical JSON record with an 'index' field",
                    index=position,
                )
            )
            return data
    else:
        raise InvalidRequest(
            f"entry {position} is a {type(item).__name__}, not an AuditRecord, leaf bytes or a "
            "PrunedLeaf",
            hint="pass the records in log order, or their leaf bytes as stored",
        )
    if index != position:
        out.add(Failure(FailureKind.SEQUENCE, _sequence_message(position, index), index=position))
    return data


def _index_in_leaf(data: bytes) -> int | None:
    """The top-level ``index`` of a canonical leaf, without parsing the whole JSON.

    Parsing every leaf would cost more than hashing it. In canonical order the top-level "index"
    key follows "content" and "details" (the only nested values) and precedes only scalar fields,
    and a string value cannot contain an unescaped quote, so its last occurrence is the real one.
    This only serves to locate damage; the signed roots remain the authority.
    """
    at = data.rfind(b'"index":')
    if at < 0 or not data.startswith(b"{") or not data.endswith(b"}"):
        return None
    start = at + 8
    end = start
    while end < len(data) and 48 <= data[end] <= 57:  # ASCII digits
        end += 1
    if end == start or end - start > 16 or data[end : end + 1] not in (b",", b"}"):
        return None
    return int(data[start:end])


def _sequence_message(position: int, index: object) -> str:
    if isinstance(index, int) and index > position:
        return (
            f"position {position} holds record {index}: records [{position}, {index}) were "
            "deleted, or records were reordered"
        )
    if isinstance(index, int) and index >= 0:
        return (
            f"position {position} holds record {index} again: a record was inserted or "
            "duplicated, or records were reordered"
        )
    return f"position {position} holds a record with index {index!r}"


def _check_checkpoints(
    checkpoints: Sequence[Checkpoint],
    ring: Mapping[str, Any],
    log_id: str | None,
    out: _Failures,
) -> list[tuple[int, Checkpoint]]:
    """The checkpoints with a trusted, valid signature for the right log, with their positions."""
    valid: list[tuple[int, Checkpoint]] = []
    for pos, cp in enumerate(checkpoints):
        try:
            verify_checkpoint(cp, ring)
        except CheckpointInvalid as exc:
            out.add(Failure(_CHECKPOINT_FAILURES[exc.reason], exc.message, checkpoint=pos))
            continue
        if log_id is None:
            log_id = cp.log_id  # without an expected id, the first trusted checkpoint sets it
        if cp.log_id != log_id:
            out.add(
                Failure(
                    FailureKind.WRONG_LOG,
                    f"checkpoint is for log {cp.log_id!r}, not {log_id!r}",
                    checkpoint=pos,
                )
            )
            continue
        valid.append((pos, cp))
    return valid


def _check_roots(
    n: int,
    roots: Mapping[int, bytes],
    valid: list[tuple[int, Checkpoint]],
    out: _Failures,
    floor: int = 0,
) -> int:
    """Compare each trusted checkpoint with the recomputed root; returns the largest size proven.

    ``roots`` holds the recomputed root of every checkpoint size up to ``n``, the log's size.
    ``floor`` is the size of a checkpoint trusted without re-reading the records below it.
    """
    covered = [(pos, cp) for pos, cp in valid if cp.tree_size <= n]
    for pos, cp in valid:
        if cp.tree_size > n:
            out.add(
                Failure(
                    FailureKind.TRUNCATED,
                    f"the log holds {n} records but this checkpoint, signed at {cp.timestamp}, "
                    f"covers {cp.tree_size}: records [{n}, {cp.tree_size}) are missing",
                    index=n,
                    index_end=cp.tree_size,
                    checkpoint=pos,
                )
            )
    good_sizes = sorted({cp.tree_size for _, cp in covered if roots[cp.tree_size] == cp.root_hash})
    for pos, cp in covered:
        if roots[cp.tree_size] == cp.root_hash:
            continue
        larger_good = [s for s in good_sizes if s > cp.tree_size]
        if larger_good:
            out.add(
                Failure(
                    FailureKind.EQUIVOCATION,
                    f"this checkpoint's root for size {cp.tree_size} contradicts a validly "
                    f"signed checkpoint of size {larger_good[0]} that matches the records: "
                    "the log signed two different histories",
                    checkpoint=pos,
                )
            )
            continue
        # Records below the largest matching checkpoint are as signed, so the change is above it.
        lo = max((s for s in good_sizes if s < cp.tree_size), default=0)
        what = (
            "a stored leaf hash"
            if cp.tree_size <= floor
            else "a record (or the stored leaf hash of a pruned one)"
        )
        out.add(
            Failure(
                FailureKind.ROOT_MISMATCH,
                f"{what} in [{lo}, {cp.tree_size}) was changed, deleted, inserted or reordered "
                f"after this checkpoint was signed at {cp.timestamp}",
                index=lo,
                index_end=cp.tree_size,
                checkpoint=pos,
            )
        )
    return max(good_sizes, default=0)


_RETENTION_MARK = b'"kind":"retention"'


def _retention_statements(
    leaves: Sequence[bytes | PrunedLeaf],
    offset: int,
    ring: Mapping[str, Ed25519PublicKey],
    log_id: str | None,
    out: _Failures,
) -> list[tuple[int, RetentionStatement]]:
    """The retention records among the bodies, with a valid signature, and their positions."""
    found: list[tuple[int, RetentionStatement]] = []
    for i, data in enumerate(leaves):
        # A cheap byte test first: only a retention record (or a detail that looks like one)
        # holds this text unescaped, so almost no leaf is parsed.
        if isinstance(data, PrunedLeaf) or _RETENTION_MARK not in data:
            continue
        position = offset + i
        try:
            record = parse_leaf(data)
        except InvalidRequest as exc:
            out.add(Failure(FailureKind.BAD_RETENTION, exc.message, index=position))
            continue
        if record.kind is not RecordKind.RETENTION:
            continue
        try:
            statement = RetentionStatement.from_record(record)
            verify_retention(statement, ring, log_id)
        except RetentionInvalid as exc:
            out.add(Failure(FailureKind.BAD_RETENTION, exc.message, index=position))
            continue
        found.append((position, statement))
    return found


def _check_summaries(
    statements: Sequence[tuple[int, RetentionStatement]],
    roots: Mapping[int, bytes],
    out: _Failures,
) -> int:
    """The largest prefix a valid retention record summarises (0 if none).

    A statement is valid when the root of the leaf hashes it names is the root it signed.
    """
    summarised = 0
    for position, st in statements:
        if roots[st.pruned_before] != st.root_hash:
            out.add(
                Failure(
                    FailureKind.ROOT_MISMATCH,
                    f"the leaf hashes of records [0, {st.pruned_before}) no longer give the root "
                    f"signed by the retention record at {position}: a stored leaf hash of the "
                    "summarised records was changed",
                    index=0,
                    index_end=st.pruned_before,
                )
            )
            continue
        summarised = max(summarised, st.pruned_before)
    return summarised


def _check_pruned(
    leaves: Sequence[bytes | PrunedLeaf], offset: int, summarised: int, out: _Failures
) -> None:
    """Every removed body must lie inside a prefix a valid retention record summarises."""
    start: int | None = None
    for i, data in enumerate([*leaves, b""]):  # a sentinel closes the last run
        position = offset + i
        orphan = isinstance(data, PrunedLeaf) and position >= summarised
        if orphan and start is None:
            start = position
        elif not orphan and start is not None:
            out.add(
                Failure(
                    FailureKind.PRUNED_WITHOUT_RETENTION,
                    f"the bodies of records [{start}, {position}) were removed, but no valid "
                    f"retention record summarises them (summarised: [0, {summarised})): records "
                    "were deleted outside retention",
                    index=start,
                    index_end=position,
                )
            )
            start = None


def _hash_entries(
    entries: Sequence[LogEntry], offset: int, out: _Failures
) -> tuple[list[bytes | PrunedLeaf], list[bytes]]:
    leaves = [_leaf_and_index(item, offset + i, out) for i, item in enumerate(entries)]
    bodies = [x for x in leaves if not isinstance(x, PrunedLeaf)]
    if len(bodies) == len(leaves):  # nothing pruned: the bulk hash
        return leaves, leaf_hashes(bodies)
    sha = hashlib.sha256
    hashes = [
        x.leaf_hash if isinstance(x, PrunedLeaf) else sha(b"\x00" + x).digest() for x in leaves
    ]
    return leaves, hashes


def _roots(
    prefix_peaks: Sequence[bytes], offset: int, tail: Sequence[bytes], sizes: Sequence[int]
) -> dict[int, bytes]:
    """Roots at ``sizes`` (each >= ``offset``) of the tree ``prefix_peaks`` + ``tail``."""
    if offset == 0:
        return roots_at(tail, sizes)
    wanted = sorted(set(sizes))
    tree = MerkleTree.from_state(offset, prefix_peaks)
    roots: dict[int, bytes] = {}
    for size in wanted:
        tree.extend(tail[tree.size - offset : size - offset])
        roots[size] = tree.root()
    return roots


def _verify(
    prefix: Sequence[bytes],
    entries: Sequence[LogEntry],
    checkpoints: Sequence[Checkpoint],
    public_keys: PublicKeys,
    log_id: str | None,
    incremental: bool,
) -> VerificationReport:
    out = _Failures()
    offset = len(prefix)
    leaves, tail = _hash_entries(entries, offset, out)
    n = offset + len(tail)
    ring = keyring(public_keys)
    valid = _check_checkpoints(checkpoints, ring, log_id, out)
    if log_id is None and valid:
        log_id = valid[0][1].log_id
    statements = _retention_statements(leaves, offset, ring, log_id, out)
    sizes = {cp.tree_size for _, cp in valid if cp.tree_size <= n}
    sizes |= {st.pruned_before for _, st in statements} | {offset, n}
    below = sorted(s for s in sizes if s <= offset)
    peaks = peaks_at(prefix, below)
    roots = {s: fold_peaks(p) for s, p in peaks.items()}
    roots.update(_roots(peaks[offset], offset, tail, [s for s in sizes if s > offset]))
    verified_size = _check_roots(n, roots, valid, out, floor=offset)
    summarised = _check_summaries(statements, roots, out)
    _check_pruned(leaves, offset, summarised, out)
    if incremental:
        _check_from(offset, peaks[offset], tail, roots[offset], valid, out)
    elif tail and not valid:
        out.add(
            Failure(
                FailureKind.NO_CHECKPOINT,
                "no checkpoint signed by a trusted key vouches for any record",
            )
        )
    return VerificationReport(
        tree_size=n,
        root_hash=roots[n],
        checkpoints_total=len(checkpoints),
        checkpoints_verified=len(valid),
        verified_size=verified_size,
        failures=tuple(out.items),
        suppressed=out.suppressed,
        summarised=summarised,
        verified_from=offset,
    )


def _check_from(
    size: int,
    peaks: Sequence[bytes],
    tail: Sequence[bytes],
    prefix_root: bytes,
    valid: list[tuple[int, Checkpoint]],
    out: _Failures,
) -> None:
    """The trusted checkpoint matches the stored hashes, and the latest one extends it."""
    trusted = [(pos, cp) for pos, cp in valid if cp.tree_size == size]
    if not trusted:
        out.add(
            Failure(
                FailureKind.NO_CHECKPOINT,
                f"no checkpoint of size {size} signed by a trusted key to verify from",
            )
        )
        return
    pos, cp = trusted[0]
    if prefix_root != cp.root_hash:
        out.add(
            Failure(
                FailureKind.ROOT_MISMATCH,
                f"the stored leaf hashes of records [0, {size}) no longer give the root of the "
                "trusted checkpoint: the log was changed below it",
                index=0,
                index_end=size,
                checkpoint=pos,
            )
        )
        return
    later = [(p, c) for p, c in valid if size < c.tree_size <= size + len(tail)]
    if not later:
        return
    latest_pos, latest = max(later, key=lambda pc: _size_key(pc[1]))
    proof = range_consistency_proof(peaks, size, tail[: latest.tree_size - size])
    try:
        verify_consistency(size, latest.tree_size, cp.root_hash, latest.root_hash, proof)
    except InvalidProof as exc:
        out.add(
            Failure(
                FailureKind.BAD_PROOF,
                f"the latest checkpoint (size {latest.tree_size}) does not extend the trusted one "
                f"(size {size}) with these records: {exc.message}",
                index=size,
                index_end=latest.tree_size,
                checkpoint=latest_pos,
            )
        )


def verify_log(
    records_or_leaf_bytes: Sequence[LogEntry],
    checkpoints: Sequence[Checkpoint],
    public_keys: PublicKeys,
    *,
    log_id: str | None = None,
) -> VerificationReport:
    """Verify a whole log, in order from index 0, against its checkpoints.

    Detects a changed byte in any record (its checkpoint's root no longer matches), deleted,
    inserted and swapped records (positions and indexes disagree, and roots do not match), a
    truncated log (a checkpoint covers more records than there are), forged checkpoints and
    checkpoints signed by an untrusted key. Records after the last checkpoint cannot be vouched
    for; ``report.uncovered`` counts them. Pass ``log_id`` to reject checkpoints of another log.

    Entries may be ``PrunedLeaf`` where retention removed a body: the stored leaf hash stands in
    for it, and a validly signed ``retention`` record in the log must summarise that position.
    """
    return _verify((), records_or_leaf_bytes, checkpoints, public_keys, log_id, False)


def verify_log_from(
    trusted_hashes: Sequence[bytes],
    records_after: Sequence[LogEntry],
    checkpoints: Sequence[Checkpoint],
    public_keys: PublicKeys,
    *,
    log_id: str | None = None,
) -> VerificationReport:
    """Verify a log from a trusted checkpoint on, without re-reading the records it covers.

    ``trusted_hashes`` are the stored leaf hashes of the first SIZE records, where a checkpoint
    of tree size SIZE is among ``checkpoints`` (signed by a trusted key; typically the one the
    previous audit ended at), and ``records_after`` the log from index SIZE on. Checks that the
    hashes still give that checkpoint's root, that the records after it are as every later
    checkpoint signed, and an RFC 9162 consistency proof from the trusted checkpoint to the
    latest, built from the trusted tree's subtree hashes and the new records.
    """
    return _verify(trusted_hashes, records_after, checkpoints, public_keys, log_id, True)


# --- export bundles ------------------------------------------------------------------------------


def _record_dict(item: AuditRecord | bytes) -> dict[str, Any]:
    record = item if isinstance(item, AuditRecord) else parse_leaf(bytes(item))
    return record.to_dict()


def build_bundle(
    records: Sequence[LogEntry],
    checkpoints: Sequence[Checkpoint],
    public_key: Ed25519PublicKey,
    proofs_for: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable bundle that verifies offline with only the public key.

    ``records`` is the whole log in order. Without ``proofs_for`` the bundle holds every record
    and every checkpoint (a complete export). With ``proofs_for`` it holds only those records,
    each with an inclusion proof against the largest checkpoint, plus consistency proofs between
    consecutive checkpoints: enough to prove these records are in the log without revealing others.
    ``public_key`` is included for reference; a verifier must use its own trusted copy.
    """
    summarised = _pruned_prefix(records)
    # _pruned_prefix refused a pruned entry after the prefix, so this only narrows the type.
    kept = [it for it in records[summarised:] if not isinstance(it, PrunedLeaf)]
    leaves = [it if isinstance(it, bytes) else leaf_bytes(it) for it in kept]
    pruned = [it.leaf_hash for it in records[:summarised] if isinstance(it, PrunedLeaf)]
    levels = MerkleLevels(pruned + leaf_hashes(leaves))
    usable = sorted((cp for cp in checkpoints if cp.tree_size <= levels.size), key=_size_key)
    consistency = []
    for older, newer in itertools.pairwise(usable):
        if older.tree_size < newer.tree_size:
            proof = levels.consistency_proof(older.tree_size, newer.tree_size)
            consistency.append(
                {
                    "old_size": older.tree_size,
                    "new_size": newer.tree_size,
                    "proof": [h.hex() for h in proof],
                }
            )
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "log_id": usable[-1].log_id if usable else None,
        "key_id": key_id(public_key),
        "public_key": public_key_to_b64(public_key),
        "complete": proofs_for is None,
        "tree_size": levels.size,
        "checkpoints": [cp.to_dict() for cp in usable],
        "consistency": consistency,
        "inclusion": [],
    }
    if proofs_for is None:
        bundle["records"] = [_record_dict(it) for it in kept]
        if summarised:  # records retention summarised: only their leaf hashes exist
            bundle["summarised_leaf_hashes"] = [h.hex() for h in pruned]
        return bundle
    if not usable:
        raise InvalidRequest(
            "no checkpoint covers these records, so there is nothing to prove them against",
            hint="sign a checkpoint of the current tree first",
        )
    target = usable[-1].tree_size
    selected = sorted(set(proofs_for))
    for index in selected:
        if not 0 <= index < target:
            raise InvalidRequest(
                f"record {index} is not covered by the latest checkpoint (size {target})",
                hint="sign a checkpoint that includes it, or pick indexes below that size",
            )
        if index < summarised:
            raise InvalidRequest(
                f"record {index} was summarised by retention: only its leaf hash remains",
                hint=f"pick records from {summarised} on",
            )
    bundle["records"] = [_record_dict(kept[i - summarised]) for i in selected]
    bundle["inclusion"] = [
        {
            "index": i,
            "tree_size": target,
            "proof": [h.hex() for h in levels.inclusion_proof(i, target)],
        }
        for i in selected
    ]
    return bundle


def _pruned_prefix(records: Sequence[LogEntry]) -> int:
    """How many leading entries are pruned; a pruned entry after a body is refused."""
    count = 0
    while count < len(records) and isinstance(records[count], PrunedLeaf):
        count += 1
    if any(isinstance(it, PrunedLeaf) for it in records[count:]):
        raise InvalidRequest(
            "records retention did not summarise have lost their bodies",
            hint="run `charter audit verify`: records were deleted outside retention",
        )
    return count


def _size_key(cp: Checkpoint) -> tuple[int, str]:
    return cp.tree_size, cp.timestamp


def _hexes(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        raise InvalidRequest("a proof must be a list of hex strings")
    return [bytes.fromhex(h) for h in value]


def verify_bundle(bundle: Mapping[str, Any], public_key: PublicKeys) -> VerificationReport:
    """Verify an export bundle with the verifier's own trusted public key(s).

    A complete bundle is verified like a log (``verify_log``); a selective one by checking every
    inclusion proof against its signed checkpoint and every consistency proof between checkpoints.
    """
    out = _Failures()
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        raise InvalidRequest(
            f"not an audit bundle of format {BUNDLE_FORMAT!r}",
            hint="create bundles with charter.audit.build_bundle (or `charter audit export`)",
        )
    checkpoints: list[Checkpoint] = []
    for pos, raw in enumerate(bundle.get("checkpoints") or []):
        try:
            checkpoints.append(Checkpoint.from_dict(raw))
        except CheckpointInvalid as exc:
            out.add(Failure(FailureKind.MALFORMED_CHECKPOINT, exc.message, checkpoint=pos))
    entries: list[LogEntry] = _bundle_summarised(bundle.get("summarised_leaf_hashes"))
    leaves: list[bytes] = []
    for pos, raw in enumerate(bundle.get("records") or []):
        leaves.append(_bundle_leaf(raw, len(entries) + pos, out))
    if bundle.get("complete") is True:
        report = verify_log(
            [*entries, *leaves], checkpoints, public_key, log_id=bundle.get("log_id")
        )
        return _merge(report, out, len(bundle.get("checkpoints") or []))
    return _verify_selective(bundle, leaves, checkpoints, public_key, out)


def _bundle_summarised(value: Any) -> list[LogEntry]:
    """The leaf hashes of the records retention summarised, as pruned entries."""
    if value is None:
        return []
    try:
        hashes = _hexes(value)
    except ValueError as exc:
        raise InvalidRequest("summarised_leaf_hashes must be a list of hex strings") from exc
    if any(len(h) != HASH_SIZE for h in hashes):
        raise InvalidRequest(f"summarised_leaf_hashes must be {HASH_SIZE}-byte hashes")
    return [PrunedLeaf(h) for h in hashes]


def _bundle_leaf(raw: Any, pos: int, out: _Failures) -> bytes:
    """Canonical bytes of a bundled record; a tampered record still hashes, so roots catch it."""
    try:
        AuditRecord.from_dict(raw)
    except InvalidRequest as exc:
        out.add(Failure(FailureKind.MALFORMED_RECORD, exc.message, index=pos))
    try:
        return canonical_json(raw)
    except InvalidRequest:
        return b""


def _merge(report: VerificationReport, out: _Failures, total: int) -> VerificationReport:
    return VerificationReport(
        tree_size=report.tree_size,
        root_hash=report.root_hash,
        checkpoints_total=total,
        checkpoints_verified=report.checkpoints_verified,
        verified_size=report.verified_size,
        failures=tuple(out.items) + report.failures,
        suppressed=report.suppressed + out.suppressed,
    )


def _verify_selective(
    bundle: Mapping[str, Any],
    leaves: list[bytes],
    checkpoints: list[Checkpoint],
    public_key: PublicKeys,
    out: _Failures,
) -> VerificationReport:
    ring = keyring(public_key)
    valid = _check_checkpoints(checkpoints, ring, bundle.get("log_id"), out)
    by_size: dict[Any, Checkpoint] = {cp.tree_size: cp for _, cp in valid}
    proofs = {p.get("index"): p for p in bundle.get("inclusion") or [] if isinstance(p, Mapping)}
    for pos, data in enumerate(leaves):
        index = _index_of(data)
        proof = proofs.get(index)
        where = index if isinstance(index, int) else pos
        if proof is None:
            out.add(Failure(FailureKind.BAD_PROOF, "record has no inclusion proof", index=where))
            continue
        cp = by_size.get(proof.get("tree_size"))
        if cp is None:
            out.add(
                Failure(
                    FailureKind.BAD_PROOF,
                    f"no trusted checkpoint of size {proof.get('tree_size')!r} to prove against",
                    index=where,
                )
            )
            continue
        try:
            verify_inclusion(
                leaf_hash(data), where, cp.tree_size, _hexes(proof["proof"]), cp.root_hash
            )
        except (InvalidProof, InvalidRequest, ValueError, KeyError) as exc:
            out.add(Failure(FailureKind.BAD_PROOF, str(exc), index=where))
    for entry in bundle.get("consistency") or []:
        try:
            old, new = by_size[entry["old_size"]], by_size[entry["new_size"]]
            verify_consistency(
                old.tree_size, new.tree_size, old.root_hash, new.root_hash, _hexes(entry["proof"])
            )
        except (InvalidProof, InvalidRequest, ValueError, KeyError, TypeError) as exc:
            out.add(Failure(FailureKind.BAD_PROOF, f"consistency proof {entry!r:.80}: {exc}"))
    if not valid:
        out.add(Failure(FailureKind.NO_CHECKPOINT, "no checkpoint signed by a trusted key"))
    latest = max((cp for _, cp in valid), key=_size_key, default=None)
    return VerificationReport(
        tree_size=latest.tree_size if latest else 0,
        root_hash=latest.root_hash if latest else EMPTY_ROOT,
        checkpoints_total=len(bundle.get("checkpoints") or []),
        checkpoints_verified=len(valid),
        verified_size=latest.tree_size if latest else 0,
        failures=tuple(out.items),
        suppressed=out.suppressed,
    )


def _index_of(data: bytes) -> Any:
    try:
        return json.loads(data)["index"]
    except (ValueError, TypeError, KeyError):
        return None
