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
import datetime as dt
import logging
import os
import queue
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charter.audit.checkpoint import (
    Checkpoint,
    SigningKey,
    generate_signing_key,
    load_signing_key,
    sign_checkpoint,
)
from charter.audit.merkle import MerkleTree, leaf_hash
from charter.audit.records import AuditRecord, Content, RecordKind, Scalar, leaf_bytes, utc_now
from charter.errors import ConfigurationError, StorageUnavailable
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

    def record(self, index: int, time: str) -> AuditRecord:
        return AuditRecord(
            index=index,
            time=time,
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
    draft: Draft
    future: concurrent.futures.Future[int]


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
    ) -> None:
        self.store = store
        self.keys = keys
        self.log_id = log_id
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._tree = MerkleTree()
        self._tree_lock = threading.Lock()
        self._since_checkpoint = 0
        self._thread = threading.Thread(target=self._run, name="charter-audit", daemon=True)
        self._thread.start()

    # --- appending -------------------------------------------------------------------------------

    def submit(self, draft: Draft) -> concurrent.futures.Future[int]:
        """Queue a record; the future gives its sequence number once committed."""
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._queue.put(_Pending(draft, future))
        return future

    async def append(self, draft: Draft) -> int:
        """Append a record and wait until it is committed."""
        return await asyncio.wrap_future(self.submit(draft))

    def append_sync(self, draft: Draft, timeout: float = 30.0) -> int:
        return self.submit(draft).result(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
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

    def _commit(self, batch: Sequence[_Pending]) -> None:
        now = utc_now()
        at = dt.datetime.now(dt.UTC)

        def build(first: int) -> list[AuditLeaf]:
            leaves = []
            for offset, pending in enumerate(batch):
                data = leaf_bytes(pending.draft.record(first + offset, now))
                leaves.append(AuditLeaf(leaf_hash(data), data.decode(), at))
            return leaves

        try:
            numbers = self.store.append_audit_built(len(batch), build)
        except Exception as exc:  # every waiter learns the record was not committed
            error = (
                exc
                if isinstance(exc, StorageUnavailable)
                else StorageUnavailable(
                    f"the audit record could not be committed ({type(exc).__name__}: {exc})"
                )
            )
            for pending in batch:
                pending.future.set_exception(error)
            return
        for pending, number in zip(batch, numbers, strict=True):
            pending.future.set_result(number)
        self._since_checkpoint += len(batch)
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
        import json

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
    import json

    return [Checkpoint.from_dict(json.loads(row.signed_blob)) for row in store.checkpoints()]


def stored_leaf_bytes(store: Store, *, chunk: int = 50_000) -> list[bytes]:
    """Every leaf's record bytes, in order."""
    size = store.audit_size()
    out: list[bytes] = []
    for start in range(0, size, chunk):
        out += [
            leaf.record_json.encode()
            for leaf in store.audit_leaves(start, min(size, start + chunk))
        ]
    return out
