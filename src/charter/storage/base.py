"""The storage interface every Charter component uses, and the rows that cross it.

One narrow, synchronous interface with two implementations (SQLite for the embedded default,
PostgreSQL for scale-out) so no code path elsewhere forks on the backend. The gateway calls it from
worker threads; money is integer micro-dollars; every time is a timezone-aware UTC ``datetime``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import ClassVar, Self


@dataclass(frozen=True, slots=True)
class CharterVersionRow:
    """A charter version seen by this deployment: its hash, canonical JSON and when first seen."""

    hash: str
    canonical_json: str
    first_seen_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A virtual key. Only its hash is stored; ``prefix`` is the few characters shown to humans."""

    id: str
    principal_id: str
    key_hash: str
    prefix: str
    description: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True while the key has not been revoked."""
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class SpendRow:
    """The settled cost of one request; ``request_id`` makes recording it idempotent."""

    request_id: str
    principal_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    at: datetime


@dataclass(frozen=True, slots=True)
class AuditLeaf:
    """One leaf of the audit Merkle log: its hash and the canonical JSON record it hashes.

    ``record_json`` is None once the record was summarised by retention (``audit_prune``): the
    leaf hash stays, so the tree and every checkpoint still verify, but the body is gone.
    """

    leaf_hash: bytes
    record_json: str | None
    at: datetime

    @property
    def pruned(self) -> bool:
        """True when retention removed this record's body and only its leaf hash remains."""
        return self.record_json is None


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A signed checkpoint of the audit log: tree size, root hash and the signed blob."""

    size: int
    root_hash: bytes
    signed_blob: bytes
    at: datetime


ACTION_STATUSES = (
    "authorized",
    "pending",
    "approved",
    "rejected",
    "expired",
    "executed",
    "abandoned",
    "failed",
    "reverted",
)
"""Every status an action can have; see docs/approvals.md for the transitions between them."""

LIVE_STATUSES = ("authorized", "pending", "approved")
"""Statuses whose reservation is still held and lapses at ``hold_until``."""

RELEASED_STATUSES = ("rejected", "expired", "abandoned", "failed")
"""Statuses whose reservation must be given back to the counters (once: see ``settled_at``)."""


@dataclass(frozen=True, slots=True)
class ActionRow:
    """A tool call Charter allowed or sent for review, and everything that happened to it.

    ``id`` and ``approval_id`` are unguessable. ``claims_json`` is the reservation held on the
    shared counters (so any replica can confirm or release it); ``settled_at`` is set once that
    reservation was confirmed (executed) or given back. JSON columns hold canonical JSON text.
    """

    id: str
    tool: str
    arguments_json: str
    principal_id: str
    status: str
    created_at: datetime
    hold_until: datetime
    updated_at: datetime
    subject: str | None = None
    conversation_id: str | None = None
    excerpt: str = ""
    claims_json: str = "[]"
    approval_id: str | None = None
    control_id: str | None = None
    decision_ids_json: str = "[]"
    reason: str = ""
    approval_control_id: str | None = None
    reviewer_roles_json: str = "[]"
    deadline: datetime | None = None
    reviewer: str | None = None
    review_reason: str | None = None
    reviewed_at: datetime | None = None
    executed_at: datetime | None = None
    outcome_json: str | None = None
    settled_at: datetime | None = None
    content_key: str | None = None  # set on escalated content (see charter.approvals.content)

    @property
    def is_content(self) -> bool:
        """True for a review of escalated content, False for a tool call."""
        return self.content_key is not None


@dataclass(frozen=True, slots=True)
class ActionChange:
    """One atomic transition of an action: its new status, and the fields it sets.

    Fields left None keep their value. ``reviewed_at`` is set to ``at`` when ``reviewer`` is
    given, ``executed_at`` when the new status is ``executed``, ``settled_at`` when ``settled``.
    """

    status: str
    at: datetime
    hold_until: datetime | None = None
    reviewer: str | None = None
    review_reason: str | None = None
    outcome_json: str | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class BreakerRow:
    """The circuit breaker of one tool: tripped or not, by whom, why and when."""

    tool: str
    tripped: bool
    reason: str
    by: str
    at: datetime


class Store(ABC):
    """What Charter keeps: charter versions, keys, console tokens, spend, counters, the audit log,
    checkpoints, tool-call actions (the approval queue) and circuit breakers.

    Implementations are thread-safe. Every driver exception is translated into
    ``charter.errors.StorageUnavailable`` (with a hint saying what to check) before it leaves a
    method, so callers never see ``sqlite3`` or ``psycopg`` errors.
    """

    backend: ClassVar[str]
    """``"sqlite"`` or ``"postgresql"``."""

    # -- lifecycle -------------------------------------------------------------------------------

    @abstractmethod
    def migrate(self) -> int:
        """Apply pending schema migrations and return the schema version.

        Idempotent, and safe when several threads or processes start at once: migrations run
        under a database-wide lock, and each runs in the same transaction as its bookkeeping.
        """

    @abstractmethod
    def schema_version(self) -> int:
        """The highest migration applied to this database (0 for an empty database)."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection. Idempotent."""

    @abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """A lock named ``name`` shared by every process that uses this database, taken only if
        free: the context yields True while this caller holds it, or False at once when another
        holder has it (it never waits). For work one replica should do at a time, e.g. audit
        retention. Released when the block ends, or when the holding process dies."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- charter versions ------------------------------------------------------------------------

    @abstractmethod
    def save_charter_version(self, hash: str, canonical_json: str, at: datetime) -> None:
        """Remember a charter version. Saving a hash already known keeps the first record."""

    @abstractmethod
    def charter_versions(self) -> list[CharterVersionRow]:
        """Every charter version seen, oldest first."""

    # -- virtual keys ----------------------------------------------------------------------------

    @abstractmethod
    def create_key(self, key: KeyRow) -> None:
        """Store a new key. Raises ``Conflict`` when its id or hash is already stored."""

    @abstractmethod
    def find_key(self, key_hash: str) -> KeyRow | None:
        """The key with this hash, revoked or not (check ``KeyRow.active``), or None."""

    @abstractmethod
    def list_keys(self, principal_id: str | None = None) -> list[KeyRow]:
        """Keys of one principal, or every key, oldest first."""

    @abstractmethod
    def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke a key; False when there is no such key or it was already revoked."""

    # -- console sign-in tokens ------------------------------------------------------------------

    @abstractmethod
    def create_console_token(self, token: KeyRow) -> None:
        """Store a new console sign-in token (its hash in ``key_hash``). Raises ``Conflict`` when
        its id or hash is already stored. Console tokens are not virtual keys: they live apart."""

    @abstractmethod
    def find_console_token(self, token_hash: str) -> KeyRow | None:
        """The console token with this hash, revoked or not (check ``KeyRow.active``), or None."""

    @abstractmethod
    def list_console_tokens(self, principal_id: str | None = None) -> list[KeyRow]:
        """Console tokens of one principal, or every one, oldest first."""

    @abstractmethod
    def revoke_console_token(self, token_id: str, at: datetime) -> bool:
        """Revoke a console token; False when there is no such token or it was already revoked."""

    # -- spend ledger ----------------------------------------------------------------------------

    @abstractmethod
    def add_spend(self, rows: Sequence[SpendRow]) -> int:
        """Record settled spend in one transaction; returns how many rows were new.

        A ``request_id`` already recorded is skipped, so retrying a settlement never double-counts.
        """

    @abstractmethod
    def spend_between(self, principal_id: str, start: datetime, end: datetime) -> int:
        """Total ``cost_micro_usd`` of a principal with ``start <= at < end``."""

    # -- counters --------------------------------------------------------------------------------

    @abstractmethod
    def add_counter(self, key: str, window_start: datetime, amount: int) -> int:
        """Add ``amount`` (may be negative) to a window's counter and return the new total.

        Atomic: concurrent callers each see a distinct total, so "add, then undo if over the cap"
        lets exactly ``cap`` callers through.
        """

    @abstractmethod
    def get_counter(self, key: str, window_start: datetime) -> int:
        """The current total of a window's counter (0 when never added to)."""

    # -- audit log -------------------------------------------------------------------------------

    def append_audit(self, leaves: Sequence[AuditLeaf]) -> list[int]:
        """Append leaves in one transaction and return their sequence numbers.

        Sequence numbers start at 0 and are contiguous across every thread and process appending
        at once: no gaps, no duplicates, and a batch's numbers are consecutive.
        """
        built = list(leaves)
        return self.append_audit_built(len(built), lambda first: built)

    @abstractmethod
    def append_audit_built(
        self, count: int, build: Callable[[int], Sequence[AuditLeaf]], *, flush: bool = True
    ) -> list[int]:
        """Append ``count`` leaves that ``build(first_seq)`` makes once their numbers are known.

        ``build`` runs inside the transaction that assigns the numbers, so a record can carry its
        own sequence number in its hashed bytes and the database stays the one sequencer for every
        replica. It must return exactly ``count`` leaves and do no I/O of its own.

        ``flush`` returns only once the commit is on disk (it survives a power cut); without it the
        commit survives a crash of the process but not of the machine (the audit control's
        ``durability``: docs/audit.md).
        """

    @abstractmethod
    def audit_size(self) -> int:
        """How many leaves the log holds."""

    @abstractmethod
    def audit_leaves(self, start: int, end: int) -> list[AuditLeaf]:
        """Leaves with ``start <= seq < end`` in order; like slicing, stops at the log's end.

        A leaf whose body retention removed has ``record_json`` None (``AuditLeaf.pruned``).
        """

    @abstractmethod
    def audit_leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Only the leaf hashes of ``start <= seq < end``, in order (no record bodies are read).

        What an incremental verification needs for the part of the log it already trusts.
        """

    @abstractmethod
    def audit_prune(self, before_seq: int) -> int:
        """Remove the record bodies of leaves with ``seq < before_seq``, keeping their hashes.

        Only retention calls this, after a signed ``retention`` record naming the range is
        committed (see docs/audit.md); the hashes keep every root and checkpoint verifiable.
        Returns how many bodies were removed (already pruned leaves are not counted).
        """

    @abstractmethod
    def audit_content_put(self, ref: str, text: str) -> None:
        """Store content a record refers to, outside the hashed leaf so it can be erased.

        Putting the same text again is a no-op; different text under a stored ref is a
        ``Conflict`` (content is never silently replaced).
        """

    @abstractmethod
    def audit_content_get(self, ref: str) -> str | None:
        """The content stored under ``ref``, or None when absent or erased."""

    @abstractmethod
    def audit_content_erase(self, ref: str) -> bool:
        """Erase content (e.g. on a data-subject request); False when there was none."""

    # -- checkpoints -----------------------------------------------------------------------------

    @abstractmethod
    def save_checkpoint(
        self, size: int, root_hash: bytes, signed_blob: bytes, at: datetime
    ) -> CheckpointRow:
        """Store a checkpoint and return the stored row.

        One checkpoint per tree size: saving a size again with the same root returns the first
        one; a different root for a stored size raises ``Conflict`` (the log would have forked).
        """

    @abstractmethod
    def latest_checkpoint(self) -> CheckpointRow | None:
        """The checkpoint with the largest tree size, or None."""

    @abstractmethod
    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint, smallest tree size first."""

    # -- actions and approvals -------------------------------------------------------------------

    @abstractmethod
    def create_action(self, action: ActionRow) -> None:
        """Store a new action. Raises ``Conflict`` when its id or approval id is already stored."""

    @abstractmethod
    def get_action(self, action_id: str) -> ActionRow | None:
        """The action with this id, or None."""

    @abstractmethod
    def find_approval(self, approval_id: str) -> ActionRow | None:
        """The action waiting for (or past) the approval with this id, or None."""

    @abstractmethod
    def find_content_review(self, content_key: str) -> ActionRow | None:
        """The newest content review with this key, whatever its status, or None."""

    @abstractmethod
    def list_actions(
        self, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRow]:
        """Actions with one of ``statuses`` (every action when None), newest first."""

    @abstractmethod
    def update_action(
        self, action_id: str, expected: Sequence[str], change: ActionChange
    ) -> ActionRow | None:
        """Apply ``change`` if the action's status is one of ``expected``; return the new row.

        Compare-and-set in one statement: of two concurrent transitions from the same status
        exactly one succeeds; the other gets None (re-read the row to say why).
        """

    @abstractmethod
    def mark_settled(self, action_id: str, at: datetime) -> bool:
        """Record that the action's reservation was given back; False if it already was."""

    @abstractmethod
    def due_actions(self, now: datetime, limit: int = 100) -> list[ActionRow]:
        """Actions needing the sweeper: live ones whose ``hold_until`` has passed, and finished
        ones whose reservation has not been given back yet. Oldest hold first."""

    @abstractmethod
    def count_executed(self, tool: str, since: datetime) -> int:
        """How many actions of ``tool`` were executed at or after ``since`` (reverted included)."""

    # -- circuit breakers ------------------------------------------------------------------------

    @abstractmethod
    def save_breaker(self, breaker: BreakerRow) -> None:
        """Set a tool's circuit breaker (tripped or reset), replacing its previous state."""

    @abstractmethod
    def breakers(self) -> list[BreakerRow]:
        """The breaker of every tool that was ever tripped or reset, by tool name."""
