"""The audit log: records appended with group commit, and signed checkpoints over them.

``AuditLog.append`` returns once the record is committed; the gateway awaits it before it answers,
so no request is acknowledged without its record. One writer thread takes everything queued while
the previous commit was in flight and commits it in one transaction: at low load a record waits for
one commit, at high load the cost of a commit is shared by the whole batch.

The database assigns sequence numbers (``Store.append_audit_built``), and each record carries its
own number in its hashed bytes, so every gateway replica appends to one totally ordered log.
Checkpoints are computed from what the store holds, so any process can sign them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from charter.audit.checkpoint import (
    Checkpoint,
    PublicKeys,
    SigningKey,
    generate_signing_key,
    load_signing_key,
    sign_checkpoint,
)
from charter.audit.merkle import MerkleTree, leaf_hash, root
from charter.audit.records import AuditRecord, Content, RecordKind, Scalar, leaf_bytes, utc_now
from charter.audit.retention import sign_retention
from charter.audit.spool import Spool
from charter.audit.verify import PrunedLeaf, verify_log
from charter.errors import ConfigurationError, Conflict, InvalidRequest, StorageUnavailable
from charter.policy.verdict import Action
from charter.storage.base import AuditLeaf, Store

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "audit-signing-key.pem"
CONTENT_KEY_FILE = "audit-content-key"
_STOP = object()


@dataclass(frozen=True, slots=True)
class Draft:
    """A record before the log gives it its number and time."""

    kind: RecordKind
    principal: str | None = None
    request_id: str | None = None
    charter_version: str | None = None
    control_ids: tuple[str, ...] = ()
    decision_ids: tuple[str, ...] = ()
    action: Action | None = None
    reason: str | None = None
    content: tuple[Content, ...] = ()
    details: Mapping[str, Scalar] = field(default_factory=dict)
    time: str | None = None  # when it happened; set when a record waited in the spool

    def record(self, index: int, time: str) -> AuditRecord:
        return AuditRecord(
            index=index,
            time=self.time or time,
            kind=self.kind,
            principal=self.principal,
            request_id=self.request_id,
            charter_version=self.charter_version,
            control_ids=self.control_ids,
            decision_ids=self.decision_ids,
            action=self.action,
            reason=self.reason,
            content=self.content,
            details=dict(self.details),
        )


def draft_to_json(draft: Draft, spool_id: str, time: str) -> dict[str, Any]:
    """A draft as a spool line: the record's JSON form (index 0) with its spool id."""
    details = {**draft.details, "spool_id": spool_id}
    return replace(draft, details=details).record(0, time).to_dict()


def draft_from_json(data: dict[str, Any]) -> Draft:
    record = AuditRecord.from_dict(data)
    return Draft(
        kind=record.kind,
        principal=record.principal,
        request_id=record.request_id,
        charter_version=record.charter_version,
        control_ids=record.control_ids,
        decision_ids=record.decision_ids,
        action=record.action,
        reason=record.reason,
        content=record.content,
        details=dict(record.details),
        time=record.time,
    )


_TIME_PLACEHOLDER = "1970-01-01T00:00:00.000000Z"
_INDEX_KEY = b'"index":0,"kind":'
_TIME_KEY = b'"time":"' + _TIME_PLACEHOLDER.encode() + b'"'


@dataclass(frozen=True, slots=True)
class Prepared:
    """A draft validated and encoded once, by whoever submits it, with only its index (and time)
    left to fill in under the sequencer. In canonical JSON a quote inside a string is escaped,
    so ``"index":0,"kind":`` and ``"time":"..."`` occur only where the keys are."""

    head: bytes
    mid: bytes
    tail: bytes
    fixed_time: bool

    @classmethod
    def of(cls, draft: Draft) -> Prepared:
        data = leaf_bytes(draft.record(0, draft.time or _TIME_PLACEHOLDER))
        cut = data.index(_INDEX_KEY) + len(b'"index":')
        head, rest = data[:cut], data[cut + 1 :]
        if draft.time is not None:
            return cls(head, rest, b"", True)
        at = rest.index(_TIME_KEY) + len(b'"time":"')
        return cls(head, rest[:at], rest[at + len(_TIME_PLACEHOLDER) :], False)

    def leaf(self, index: int, time: str) -> bytes:
        """The record's leaf bytes: exactly ``leaf_bytes(draft.record(index, time))``."""
        if self.fixed_time:
            return self.head + str(index).encode() + self.mid
        return self.head + str(index).encode() + self.mid + time.encode() + self.tail


@dataclass(frozen=True, slots=True)
class AuditKeys:
    """The checkpoint signing key and the key of the content hashes."""

    signing: SigningKey
    content: bytes


def open_keys(data_dir: str | os.PathLike[str]) -> AuditKeys:
    """Load the audit keys from ``data_dir``, creating them (mode 0600) on first use.

    Replicas that share one log must share these files (mount them read-only from a secret store).
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    signing_path = directory / SIGNING_KEY_FILE
    signing = (
        load_signing_key(signing_path)
        if signing_path.exists()
        else generate_signing_key(signing_path)
    )
    content_path = directory / CONTENT_KEY_FILE
    if not content_path.exists():
        fd = os.open(content_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    if content_path.stat().st_mode & 0o077:
        raise ConfigurationError(
            f"{content_path} is readable by other users",
            hint=f"chmod 600 {content_path}",
        )
    return AuditKeys(signing, bytes.fromhex(content_path.read_text().strip()))


@dataclass
class _Pending:
    """A queued record and who waits for it: a thread (``future``) or a coroutine (``waiter``
    on ``loop``; a batch wakes each loop once, not once per record)."""

    draft: Draft
    prepared: Prepared
    future: concurrent.futures.Future[int | None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[int | None] | None = None


def _settle_waiters(
    items: list[tuple[asyncio.Future[int | None], int | BaseException | None]],
) -> None:
    for waiter, outcome in items:
        if waiter.done():
            continue  # the request was cancelled; the record is committed all the same
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


def _settle(batch: Sequence[_Pending], outcomes: Sequence[int | BaseException | None]) -> None:
    """Tell every waiter of a batch how its record ended: threads directly, each event loop with
    one callback for all of its coroutines."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for pending, outcome in zip(batch, outcomes, strict=True):
        if pending.future is not None:
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
        elif pending.loop is not None and pending.waiter is not None:
            by_loop.setdefault(pending.loop, []).append((pending.waiter, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_waiters, items)


RETENTION_LOCK = "charter-audit-retention"
"""The store-wide lock that lets one process at a time apply retention: with several replicas on
one database, each would otherwise verify the whole log and append its own retention record."""


class AuditLog:
    """Appends records with group commit and signs checkpoints."""

    def __init__(
        self,
        store: Store,
        keys: AuditKeys,
        *,
        log_id: str = "charter",
        max_batch: int = 1024,
        checkpoint_every: int = 10_000,
        spool: Spool | None = None,
        retry_s: float = 1.0,
        flush: bool = True,
    ) -> None:
        self.store = store
        self.flush = flush  # each commit reaches the disk before its waiters hear of it
        self.spool = spool
        self.retry_s = retry_s
        self._down_until = 0.0  # after a failure, spool without asking the store until then
        self.keys = keys
        self.log_id = log_id
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._tree = MerkleTree()
        self._tree_lock = threading.Lock()
        self._retain_lock = threading.Lock()
        self._since_checkpoint = 0
        self._thread = threading.Thread(target=self._run, name="charter-audit", daemon=True)
        self._thread.start()

    # --- appending -------------------------------------------------------------------------------

    def submit(self, draft: Draft) -> concurrent.futures.Future[int | None]:
        """Queue a record; the future gives its sequence number once committed, or None once it
        is durably spooled because the database is unreachable."""
        future: concurrent.futures.Future[int | None] = concurrent.futures.Future()
        # Validated and encoded here, in the caller, not in the one writer thread.
        self._queue.put(_Pending(draft, Prepared.of(draft), future=future))
        return future

    async def append(self, draft: Draft) -> int | None:
        """Append a record and wait until it is committed (or durably spooled)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int | None] = loop.create_future()
        self._queue.put(_Pending(draft, Prepared.of(draft), loop=loop, waiter=waiter))
        return await waiter

    def append_sync(self, draft: Draft, timeout: float = 30.0) -> int | None:
        return self.submit(draft).result(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s)
            except queue.Empty:
                self._drain_spool()
                continue
            if item is _STOP:
                self._drain_spool(force=True)
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit([b for b in batch if isinstance(b, _Pending)])
            if stop:
                return

    def _append(self, prepared: Sequence[Prepared]) -> list[int]:
        now = utc_now()
        at = dt.datetime.now(dt.UTC)

        def build(first: int) -> list[AuditLeaf]:
            leaves = []
            for offset, item in enumerate(prepared):
                data = item.leaf(first + offset, now)
                leaves.append(AuditLeaf(leaf_hash(data), data.decode(), at))
            return leaves

        numbers = self.store.append_audit_built(len(prepared), build, flush=self.flush)
        self._since_checkpoint += len(prepared)
        return numbers

    def _commit(self, batch: Sequence[_Pending]) -> None:
        if self.spool is not None and self.spool.has_pending() and not self._drain_spool():
            self._to_spool(batch)  # older records still wait in the spool: keep the order
            return
        try:
            numbers = self._append([p.prepared for p in batch])
        except Exception as exc:
            if self.spool is not None and isinstance(exc, StorageUnavailable):
                log.warning("audit store unavailable, spooling %d records: %s", len(batch), exc)
                self._down_until = time.monotonic() + self.retry_s
                self._to_spool(batch)
                return
            error = (
                exc
                if isinstance(exc, StorageUnavailable)
                else StorageUnavailable(
                    f"the audit record could not be committed ({type(exc).__name__}: {exc})"
                )
            )
            _settle(batch, [error] * len(batch))  # every waiter learns it was not committed
            return
        _settle(batch, numbers)
        self._maybe_checkpoint()

    def _to_spool(self, batch: Sequence[_Pending]) -> None:
        assert self.spool is not None
        now = utc_now()
        try:
            self.spool.append(draft_to_json(p.draft, Spool.new_id(), now) for p in batch)
        except OSError as exc:
            error = StorageUnavailable(f"the audit store and the local spool both failed: {exc}")
            _settle(batch, [error] * len(batch))
            return
        _settle(batch, [None] * len(batch))

    def _drain_spool(self, *, force: bool = False) -> bool:
        """Replay spooled records in order; True when the spool is empty afterwards."""
        if self.spool is None or not self.spool.has_pending():
            return True
        if not force and time.monotonic() < self._down_until:
            return False  # the store failed moments ago: don't make every batch wait on it
        entries = self.spool.pending()
        try:
            done = self._spool_ids_in_log(len(entries))
            skip = 0
            while skip < len(entries) and entries[skip]["details"].get("spool_id") in done:
                skip += 1
            if skip:
                self.spool.advance(skip)
            rest = entries[skip:]
            for start in range(0, len(rest), self.max_batch):
                chunk = rest[start : start + self.max_batch]
                self._append([Prepared.of(draft_from_json(e)) for e in chunk])
                self.spool.advance(len(chunk))
        except StorageUnavailable as exc:
            log.info("audit spool waits for the store: %s", exc)
            self._down_until = time.monotonic() + self.retry_s
            return False
        log.info("audit spool replayed %d records", len(entries))
        self._maybe_checkpoint()
        return True

    def _spool_ids_in_log(self, count: int) -> set[str]:
        """Spool ids among the log's last records: a replay that crashed after its commit."""
        size = self.store.audit_size()
        tail = self.store.audit_leaves(max(0, size - count - self.max_batch), size)
        ids = set()
        for leaf in tail:
            if leaf.record_json is not None and '"spool_id"' in leaf.record_json:
                ids.add(str(json.loads(leaf.record_json)["details"]["spool_id"]))
        return ids

    def _maybe_checkpoint(self) -> None:
        if self._since_checkpoint >= self.checkpoint_every:
            try:
                self.checkpoint()
            except StorageUnavailable as exc:
                log.warning("checkpoint failed, will retry after the next batch: %s", exc)

    # --- checkpoints -----------------------------------------------------------------------------

    def _sync_tree(self) -> MerkleTree:
        """Bring the in-memory tree up to what the store holds (other replicas append too)."""
        size = self.store.audit_size()
        while self._tree.size < size:
            end = min(size, self._tree.size + 10_000)
            for leaf in self.store.audit_leaves(self._tree.size, end):
                self._tree.append(leaf.leaf_hash)
        return self._tree

    def checkpoint(self) -> Checkpoint:
        """Sign the current size and root of the log and store the checkpoint."""
        with self._tree_lock:
            tree = self._sync_tree()
            checkpoint = sign_checkpoint(
                self.keys.signing, log_id=self.log_id, tree_size=tree.size, root_hash=tree.root()
            )
            self.store.save_checkpoint(
                checkpoint.tree_size,
                checkpoint.root_hash,
                json.dumps(checkpoint.to_dict()).encode(),
                dt.datetime.now(dt.UTC),
            )
            self._since_checkpoint = 0
        return checkpoint

    # --- retention -------------------------------------------------------------------------------

    def retain(
        self,
        cutoff: dt.datetime,
        *,
        retention: str | None = None,
        public_keys: PublicKeys | None = None,
    ) -> RetentionResult | None:
        """Summarise the records committed before ``cutoff`` and remove their bodies.

        Steps, in an order that is safe to interrupt anywhere: sign a checkpoint of the whole log;
        verify the log (nothing is removed from a log that does not verify: it is evidence);
        sign a checkpoint at N, the first record committed at or after ``cutoff``; append a
        ``retention`` record carrying a signed statement that ``[0, N)`` is summarised by the
        root at N; checkpoint it; only then remove the bodies of ``[0, N)`` (their leaf hashes
        stay). Returns None when no record is old enough. ``public_keys`` are the keys the log's
        checkpoints verify with (default: this log's signing key; add old keys after a rotation).
        """
        if cutoff.tzinfo is None:
            raise InvalidRequest("the retention cutoff must be timezone-aware (UTC)")
        with self._retain_lock, self.store.exclusive(RETENTION_LOCK) as mine:
            if not mine:
                raise Conflict(
                    "another process sharing this audit log is applying retention now",
                    hint="nothing to do: it summarises the same records; run it again later "
                    "to see its result",
                    code="retention_busy",
                )
            first_body = self._first_body()
            end = self._first_committed_at_or_after(cutoff, first_body)
            if end <= first_body:
                return None
            self.checkpoint()
            report = verify_log(
                stored_log(self.store),
                stored_checkpoints(self.store),
                self.keys.signing.public_key if public_keys is None else public_keys,
                log_id=self.log_id,
            )
            if not report.ok:
                raise Conflict(
                    "the audit log does not verify, so retention will not remove any record "
                    f"body (they are the evidence): {report.summary().splitlines()[0]}",
                    hint="run `charter audit verify` and investigate; pass every public key "
                    "the log was ever signed with if the key was rotated",
                )
            summary_root = root(self.store.audit_leaf_hashes(0, end))
            summary = sign_checkpoint(
                self.keys.signing, log_id=self.log_id, tree_size=end, root_hash=summary_root
            )
            stored = self.store.save_checkpoint(
                end, summary_root, json.dumps(summary.to_dict()).encode(), dt.datetime.now(dt.UTC)
            )
            cutoff_text = cutoff.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            statement = sign_retention(
                self.keys.signing,
                log_id=self.log_id,
                pruned_before=end,
                root_hash=summary_root,
                cutoff=cutoff_text,
                retention=retention,
            )
            index = self.append_sync(
                Draft(
                    kind=RecordKind.RETENTION,
                    reason=f"records [0, {end}), committed before {cutoff_text}, are summarised "
                    f"by the signed checkpoint of size {end}",
                    details=statement.details(),
                )
            )
            if index is None:
                raise StorageUnavailable(
                    "the retention record was spooled because the store is unreachable; "
                    "no record body was removed",
                    hint="run retention again once the database is back",
                )
            self.checkpoint()
            removed = self.store.audit_prune(end)
        log.info("audit retention: records [0, %d) summarised, %d bodies removed", end, removed)
        return RetentionResult(
            pruned_before=end,
            record_index=index,
            removed=removed,
            checkpoint=Checkpoint.from_dict(json.loads(stored.signed_blob)),
            cutoff=cutoff_text,
        )

    def _first_body(self) -> int:
        """The index of the first record whose body is still stored (bodies go as a prefix)."""
        lo, hi = 0, self.store.audit_size()
        while lo < hi:
            mid = (lo + hi) // 2
            if self.store.audit_leaves(mid, mid + 1)[0].pruned:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _first_committed_at_or_after(self, cutoff: dt.datetime, start: int) -> int:
        """The first index at or after ``start`` committed at or after ``cutoff`` (else the size).

        Commit times of different replicas may interleave slightly out of order; stopping at the
        first young record never removes one younger than the cutoff.
        """
        size = self.store.audit_size()
        for first in range(start, size, 10_000):
            for offset, leaf in enumerate(
                self.store.audit_leaves(first, min(size, first + 10_000))
            ):
                if leaf.at >= cutoff:
                    return first + offset
        return size

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, sign a final checkpoint, stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._since_checkpoint:
            try:
                self.checkpoint()
            except StorageUnavailable as exc:
                log.warning("final checkpoint failed: %s", exc)


def stored_checkpoints(store: Store) -> list[Checkpoint]:
    """Every checkpoint the store holds, parsed."""
    return [Checkpoint.from_dict(json.loads(row.signed_blob)) for row in store.checkpoints()]


def stored_leaf_bytes(store: Store, *, chunk: int = 50_000) -> list[bytes]:
    """The record bytes of every leaf whose body is stored, in order.

    Records whose bodies retention removed are left out, so after retention the list no longer
    starts at index 0; verification needs every position, which ``stored_log`` gives.
    """
    size = store.audit_size()
    out: list[bytes] = []
    for start in range(0, size, chunk):
        out += [
            leaf.record_json.encode()
            for leaf in store.audit_leaves(start, min(size, start + chunk))
            if leaf.record_json is not None
        ]
    return out


def stored_log(store: Store, start: int = 0, *, chunk: int = 50_000) -> list[bytes | PrunedLeaf]:
    """Every position of the log from ``start`` on, in order, as ``verify_log`` takes it: the
    record bytes, or a ``PrunedLeaf`` holding the stored leaf hash where retention removed the
    body."""
    size = store.audit_size()
    out: list[bytes | PrunedLeaf] = []
    for first in range(start, size, chunk):
        out += [
            PrunedLeaf(leaf.leaf_hash) if leaf.record_json is None else leaf.record_json.encode()
            for leaf in store.audit_leaves(first, min(size, first + chunk))
        ]
    return out


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run did: records ``[0, pruned_before)`` are summarised by
    ``checkpoint`` and the ``retention`` record at ``record_index``; ``removed`` bodies went."""

    pruned_before: int
    record_index: int
    removed: int
    checkpoint: Checkpoint
    cutoff: str
