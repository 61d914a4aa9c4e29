"""The embedded default store: one SQLite file in WAL mode, through the standard library.

One writer connection guarded by a lock (SQLite allows one writer at a time anyway, and
``BEGIN IMMEDIATE`` extends that to other processes), and one read-only connection per thread, so
reads never wait for writes (Datasette's layout).

Durability: the file runs with ``synchronous=NORMAL``. In WAL mode that loses no committed
transaction when the process crashes (even ``kill -9``: the WAL is in the OS page cache), only on
power loss or an OS crash, and it saves an fsync per commit. Writes whose loss on power failure
would matter (the audit log, unless its control's ``durability`` is ``commit``, and its
checkpoints, erasures, key creation and revocation, charter versions, migrations) switch to
``synchronous=FULL`` for their transaction. Spend and counter
writes stay on NORMAL: they are per request, and losing the last instant before a power cut is the
accepted cost.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from charter.errors import ConfigurationError, Conflict, StorageUnavailable
from charter.storage import validate as v
from charter.storage.base import (
    LIVE_STATUSES,
    RELEASED_STATUSES,
    ActionChange,
    ActionRow,
    AuditLeaf,
    BreakerRow,
    CharterVersionRow,
    CheckpointRow,
    KeyRow,
    SpendRow,
    Store,
)
from charter.storage.rows import action_from_row, action_sets
from charter.storage.schema import (
    check_not_newer,
    latest_version,
    load_migrations,
    split_sqlite_statements,
)

_KEY_COLUMNS = "id, principal_id, key_hash, prefix, description, created_us, revoked_us"
_TOKEN_COLUMNS = "id, principal_id, token_hash, prefix, description, created_us, revoked_us"
_ACTION_COLUMNS = (
    "id, approval_id, tool, arguments_json, principal_id, subject, conversation_id, excerpt,"
    " status, claims_json, control_id, decision_ids_json, reason, approval_control_id,"
    " reviewer_roles_json, created_us, hold_until_us, deadline_us, reviewer, review_reason,"
    " reviewed_us, executed_us, outcome_json, settled_us, updated_us, content_key"
)


class SQLiteStore(Store):
    """A ``Store`` in one SQLite file. Thread-safe; several processes may share the file."""

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        """Open (creating if needed) the database file at ``path``.

        ``busy_timeout`` is how many seconds a write waits for another process's write to finish
        before giving up with ``StorageUnavailable``.
        """
        self._path = os.fspath(path)
        if self._path in ("", ":memory:") or self._path.startswith("file:"):
            raise ConfigurationError(
                f"SQLite storage needs a file path, got {self._path!r}",
                hint="pass a path such as ./charter.db (an in-memory database cannot be shared "
                "between the writer and the per-thread readers; tests use a temporary file)",
            )
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._readers_lock = threading.Lock()
        # Weak: when a thread ends, its _ThreadReader goes with its thread-local storage and
        # closes the connection; worker pools that recycle idle threads must not pile them up.
        self._readers: weakref.WeakSet[_ThreadReader] = weakref.WeakSet()
        self._local = threading.local()
        self._closed = False
        with self._translate("open the database"):
            self._writer = self._connect()
            try:
                mode = self._switch_to_wal()
            except BaseException:
                self._writer.close()
                raise
        if mode.lower() != "wal":
            self._writer.close()
            raise StorageUnavailable(
                f"SQLite database {self._path} could not switch to WAL mode (it is in {mode!r})",
                hint="put the file on a local file system; WAL does not work on network shares",
            )

    # -- connections and transactions ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a write lock is taken exactly
        # when we say (BEGIN IMMEDIATE), not lazily at the first INSERT where it could deadlock.
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # close() runs on whichever thread shuts down
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _switch_to_wal(self) -> str:
        """Put the file in WAL mode (it stays so) and return the journal mode now in force.

        Switching needs an exclusive lock, and SQLite answers "database is locked" at once,
        without waiting on busy_timeout, when another process is opening or writing the same
        new file; so retry until busy_timeout has passed.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                return str(self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _reader(self) -> sqlite3.Connection:
        reader: _ThreadReader | None = getattr(self._local, "reader", None)
        if reader is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            reader = _ThreadReader(conn)
            with self._readers_lock:
                if self._closed:
                    conn.close()
                    raise _closed_error()
                self._readers.add(reader)
            self._local.reader = reader
        return reader.conn

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn any sqlite3 error into ``StorageUnavailable`` that says what to check."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"SQLite database {self._path} could not {what}: {exc}",
                hint=_hint(exc, self._busy_timeout),
            ) from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise _closed_error()
        with self._translate(what):
            yield self._reader()

    @contextmanager
    def _write(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, holding the write lock throughout."""
        with self._write_lock, self._translate(what):
            if self._closed:
                raise _closed_error()
            conn = self._writer
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """An advisory ``flock`` on a file beside the database (``<db>.lock-<digest>``), so every
        process on this host that opens the same file shares it; the kernel drops it when the
        holder exits, however it exits."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        path = f"{self._path}.lock-{digest}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot open the lock file {path}: {exc.strerror}",
                hint="check that the database's directory is writable by this process",
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
            for reader in list(self._readers):
                reader.conn.close()
            self._readers.clear()

    # -- migrations ------------------------------------------------------------------------------

    def migrate(self) -> int:
        # BEGIN IMMEDIATE takes the database's write lock before the version is read, so a
        # second process migrating at the same time waits, then finds nothing left to do.
        with self._write("apply schema migrations", durable=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us INTEGER NOT NULL)"
            )
            current = int(
                conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[
                    0
                ]
            )
            check_not_newer(current, self.backend)
            for migration in load_migrations(self.backend)[current:]:
                for statement in split_sqlite_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_us) VALUES (?, ?, ?)",
                    (migration.version, migration.name, v.to_micros(datetime.now(UTC), "now")),
                )
        return latest_version(self.backend)

    def schema_version(self) -> int:
        with self._read("read the schema version") as conn:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            if exists is None:
                return 0
            return int(
                conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[
                    0
                ]
            )

    # -- charter versions ------------------------------------------------------------------------

    def save_charter_version(self, hash: str, canonical_json: str, at: datetime) -> None:
        params = (
            v.text(hash, "hash"),
            v.text(canonical_json, "canonical_json"),
            v.to_micros(at, "at"),
        )
        with self._write("save a charter version", durable=True) as conn:
            conn.execute(
                "INSERT INTO charter_versions (hash, canonical_json, first_seen_us)"
                " VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                params,
            )

    def charter_versions(self) -> list[CharterVersionRow]:
        with self._read("list charter versions") as conn:
            rows = conn.execute(
                "SELECT hash, canonical_json, first_seen_us FROM charter_versions"
                " ORDER BY first_seen_us, hash"
            ).fetchall()
        return [CharterVersionRow(h, j, v.from_micros(t)) for h, j, t in rows]

    # -- virtual keys ----------------------------------------------------------------------------

    def create_key(self, key: KeyRow) -> None:
        v.key_row(key)
        revoked = None if key.revoked_at is None else v.to_micros(key.revoked_at, "revoked_at")
        with self._write("create a key", durable=True) as conn:
            cursor = conn.execute(
                f"INSERT INTO virtual_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    key.id,
                    key.principal_id,
                    key.key_hash,
                    key.prefix,
                    key.description,
                    v.to_micros(key.created_at, "created_at"),
                    revoked,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"a key with id {key.id!r} or the same hash already exists",
                    hint="generate a new key id and secret",
                )

    def find_key(self, key_hash: str) -> KeyRow | None:
        with self._read("look up a key") as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
        return None if row is None else _key(row)

    def list_keys(self, principal_id: str | None = None) -> list[KeyRow]:
        with self._read("list keys") as conn:
            if principal_id is None:
                rows = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM virtual_keys ORDER BY created_us, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE principal_id = ?"
                    " ORDER BY created_us, id",
                    (principal_id,),
                ).fetchall()
        return [_key(row) for row in rows]

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        when = v.to_micros(at, "at")
        with self._write("revoke a key", durable=True) as conn:
            cursor = conn.execute(
                "UPDATE virtual_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (when, key_id),
            )
            return cursor.rowcount == 1

    # -- console sign-in tokens ------------------------------------------------------------------

    def create_console_token(self, token: KeyRow) -> None:
        v.key_row(token)
        revoked = _micros_or_none(token.revoked_at)
        with self._write("create a console token", durable=True) as conn:
            cursor = conn.execute(
                f"INSERT INTO console_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    token.id,
                    token.principal_id,
                    token.key_hash,
                    token.prefix,
                    token.description,
                    v.to_micros(token.created_at, "created_at"),
                    revoked,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"a console token with id {token.id!r} or the same hash already exists",
                    hint="generate a new token id and secret",
                )

    def find_console_token(self, token_hash: str) -> KeyRow | None:
        with self._read("look up a console token") as conn:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM console_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return None if row is None else _key(row)

    def list_console_tokens(self, principal_id: str | None = None) -> list[KeyRow]:
        with self._read("list console tokens") as conn:
            if principal_id is None:
                rows = conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM console_tokens ORDER BY created_us, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM console_tokens WHERE principal_id = ?"
                    " ORDER BY created_us, id",
                    (principal_id,),
                ).fetchall()
        return [_key(row) for row in rows]

    def revoke_console_token(self, token_id: str, at: datetime) -> bool:
        when = v.to_micros(at, "at")
        with self._write("revoke a console token", durable=True) as conn:
            cursor = conn.execute(
                "UPDATE console_tokens SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (when, token_id),
            )
            return cursor.rowcount == 1

    # -- spend -----------------------------------------------------------------------------------

    def add_spend(self, rows: Sequence[SpendRow]) -> int:
        v.spend_rows(rows)
        if not rows:
            return 0
        params = [
            (
                r.request_id,
                r.principal_id,
                r.model,
                r.input_tokens,
                r.output_tokens,
                r.cost_micro_usd,
                v.to_micros(r.at, "at"),
            )
            for r in rows
        ]
        with self._write("record spend") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO spend (request_id, principal_id, model, input_tokens,"
                " output_tokens, cost_micro_usd, at_us) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (request_id) DO NOTHING",
                params,
            )
            return conn.total_changes - before

    def spend_between(self, principal_id: str, start: datetime, end: datetime) -> int:
        params = (principal_id, v.to_micros(start, "start"), v.to_micros(end, "end"))
        with self._read("sum spend") as conn:
            row = conn.execute(
                "SELECT coalesce(sum(cost_micro_usd), 0) FROM spend"
                " WHERE principal_id = ? AND at_us >= ? AND at_us < ?",
                params,
            ).fetchone()
        return int(row[0])

    # -- counters --------------------------------------------------------------------------------

    def add_counter(self, key: str, window_start: datetime, amount: int) -> int:
        params = (v.text(key, "key"), v.to_micros(window_start, "window_start"))
        v.integer(amount, "amount")
        # The write lock and BEGIN IMMEDIATE make upsert-then-read one atomic step, across
        # threads and processes; RETURNING would need SQLite 3.35, which not every Python has.
        with self._write("add to a counter") as conn:
            conn.execute(
                "INSERT INTO counters (key, window_start_us, total) VALUES (?, ?, ?)"
                " ON CONFLICT (key, window_start_us) DO UPDATE SET total = total + excluded.total",
                (*params, amount),
            )
            row = conn.execute(
                "SELECT total FROM counters WHERE key = ? AND window_start_us = ?", params
            ).fetchone()
            return int(row[0])

    def get_counter(self, key: str, window_start: datetime) -> int:
        params = (key, v.to_micros(window_start, "window_start"))
        with self._read("read a counter") as conn:
            row = conn.execute(
                "SELECT total FROM counters WHERE key = ? AND window_start_us = ?", params
            ).fetchone()
        return 0 if row is None else int(row[0])

    # -- audit log -------------------------------------------------------------------------------

    def append_audit_built(
        self, count: int, build: Callable[[int], Sequence[AuditLeaf]], *, flush: bool = True
    ) -> list[int]:
        if count <= 0:
            return []
        # Reading the next number and inserting happen under the database write lock, so every
        # appender (thread or process) gets a distinct, contiguous block.
        with self._write("append to the audit log", durable=flush) as conn:
            first = int(
                conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_leaves").fetchone()[0]
            )
            leaves = v.built_leaves(build, first, count)
            rows = [(bytes(x.leaf_hash), x.record_json, v.to_micros(x.at, "at")) for x in leaves]
            conn.executemany(
                "INSERT INTO audit_leaves (seq, leaf_hash, record_json, at_us) VALUES (?, ?, ?, ?)",
                [(first + i, *row) for i, row in enumerate(rows)],
            )
        return list(range(first, first + len(rows)))

    def audit_size(self) -> int:
        # Sequence numbers are gap-free from 0, so max + 1 is the count without a table scan.
        with self._read("read the audit log size") as conn:
            row = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_leaves").fetchone()
        return int(row[0])

    def audit_leaves(self, start: int, end: int) -> list[AuditLeaf]:
        v.audit_range(start, end)
        with self._read("read the audit log") as conn:
            # A pruned body is stored as '' (see audit_prune); a canonical record never is.
            rows = conn.execute(
                "SELECT leaf_hash, nullif(record_json, ''), at_us FROM audit_leaves"
                " WHERE seq >= ? AND seq < ? ORDER BY seq",
                (start, end),
            ).fetchall()
        return [AuditLeaf(bytes(h), j, v.from_micros(t)) for h, j, t in rows]

    def audit_leaf_hashes(self, start: int, end: int) -> list[bytes]:
        v.audit_range(start, end)
        with self._read("read the audit log's leaf hashes") as conn:
            rows = conn.execute(
                "SELECT leaf_hash FROM audit_leaves WHERE seq >= ? AND seq < ? ORDER BY seq",
                (start, end),
            ).fetchall()
        return [bytes(h) for (h,) in rows]

    def audit_prune(self, before_seq: int) -> int:
        v.integer(before_seq, "before_seq", minimum=0)
        # The column stays NOT NULL: '' marks a pruned body, which no migration (and no table
        # rebuild of the largest table) is needed for; the read methods turn it into None.
        with self._write("prune audit record bodies", durable=True) as conn:
            cursor = conn.execute(
                "UPDATE audit_leaves SET record_json = '' WHERE seq < ? AND record_json <> ''",
                (before_seq,),
            )
            return cursor.rowcount

    def audit_content_put(self, ref: str, text: str) -> None:
        params = (v.text(ref, "ref"), v.text(text, "text", allow_empty=True))
        with self._write("store audit content", durable=True) as conn:
            cursor = conn.execute(
                "INSERT INTO audit_content (ref, content) VALUES (?, ?)"
                " ON CONFLICT (ref) DO NOTHING",
                params,
            )
            if cursor.rowcount == 0:
                stored = conn.execute(
                    "SELECT content FROM audit_content WHERE ref = ?", (ref,)
                ).fetchone()
                if stored is not None and stored[0] != text:
                    raise _content_conflict(ref)

    def audit_content_get(self, ref: str) -> str | None:
        with self._read("read audit content") as conn:
            row = conn.execute("SELECT content FROM audit_content WHERE ref = ?", (ref,)).fetchone()
        return None if row is None else str(row[0])

    def audit_content_erase(self, ref: str) -> bool:
        with self._write("erase audit content", durable=True) as conn:
            cursor = conn.execute("DELETE FROM audit_content WHERE ref = ?", (ref,))
            return cursor.rowcount == 1

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(
        self, size: int, root_hash: bytes, signed_blob: bytes, at: datetime
    ) -> CheckpointRow:
        row = (
            v.integer(size, "size", minimum=0),
            v.blob(root_hash, "root_hash"),
            v.blob(signed_blob, "signed_blob"),
            v.to_micros(at, "at"),
        )
        with self._write("save a checkpoint", durable=True) as conn:
            conn.execute(
                "INSERT INTO audit_checkpoints (size, root_hash, signed_blob, at_us)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING",
                row,
            )
            stored = conn.execute(
                "SELECT size, root_hash, signed_blob, at_us FROM audit_checkpoints WHERE size = ?",
                (size,),
            ).fetchone()
        checkpoint = _checkpoint(stored)
        if checkpoint.root_hash != row[1]:
            raise _fork_conflict(size)
        return checkpoint

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self._read("read the latest checkpoint") as conn:
            row = conn.execute(
                "SELECT size, root_hash, signed_blob, at_us FROM audit_checkpoints"
                " ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _checkpoint(row)

    def checkpoints(self) -> list[CheckpointRow]:
        with self._read("list checkpoints") as conn:
            rows = conn.execute(
                "SELECT size, root_hash, signed_blob, at_us FROM audit_checkpoints ORDER BY size"
            ).fetchall()
        return [_checkpoint(row) for row in rows]

    # -- actions and approvals -------------------------------------------------------------------

    def create_action(self, action: ActionRow) -> None:
        v.action_row(action)
        params = (
            action.id,
            action.approval_id,
            action.tool,
            action.arguments_json,
            action.principal_id,
            action.subject,
            action.conversation_id,
            action.excerpt,
            action.status,
            action.claims_json,
            action.control_id,
            action.decision_ids_json,
            action.reason,
            action.approval_control_id,
            action.reviewer_roles_json,
            v.to_micros(action.created_at, "created_at"),
            v.to_micros(action.hold_until, "hold_until"),
            _micros_or_none(action.deadline),
            action.reviewer,
            action.review_reason,
            _micros_or_none(action.reviewed_at),
            _micros_or_none(action.executed_at),
            action.outcome_json,
            _micros_or_none(action.settled_at),
            v.to_micros(action.updated_at, "updated_at"),
            action.content_key,
        )
        marks = ", ".join("?" * len(params))
        with self._write("store an action", durable=True) as conn:
            cursor = conn.execute(
                f"INSERT INTO actions ({_ACTION_COLUMNS}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                params,
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"an action with id {action.id!r} or the same approval id already exists",
                    hint="generate new ids (charter.approvals does)",
                )

    def get_action(self, action_id: str) -> ActionRow | None:
        with self._read("read an action") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = ?", (action_id,)
            ).fetchone()
        return None if row is None else _action(row)

    def find_approval(self, approval_id: str) -> ActionRow | None:
        with self._read("read an approval") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE approval_id = ?", (approval_id,)
            ).fetchone()
        return None if row is None else _action(row)

    def find_content_review(self, content_key: str) -> ActionRow | None:
        with self._read("read a content review") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE content_key = ?"
                " ORDER BY created_us DESC, id LIMIT 1",
                (content_key,),
            ).fetchone()
        return None if row is None else _action(row)

    def list_actions(
        self, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRow]:
        v.integer(limit, "limit", minimum=1)
        with self._read("list actions") as conn:
            if statuses is None:
                rows = conn.execute(
                    f"SELECT {_ACTION_COLUMNS} FROM actions ORDER BY created_us DESC, id LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                wanted = v.statuses(statuses)
                marks = ", ".join("?" * len(wanted))
                rows = conn.execute(
                    f"SELECT {_ACTION_COLUMNS} FROM actions WHERE status IN ({marks})"
                    " ORDER BY created_us DESC, id LIMIT ?",
                    (*wanted, limit),
                ).fetchall()
        return [_action(row) for row in rows]

    def update_action(
        self, action_id: str, expected: Sequence[str], change: ActionChange
    ) -> ActionRow | None:
        wanted = v.statuses(expected, "expected")
        v.action_change(change)
        at = v.to_micros(change.at, "at")
        sets, params = action_sets(change, at, "?", _micros_or_none)
        marks = ", ".join("?" * len(wanted))
        # The write lock and BEGIN IMMEDIATE make the status test and the update one step.
        with self._write("update an action", durable=True) as conn:
            cursor = conn.execute(
                f"UPDATE actions SET {sets} WHERE id = ? AND status IN ({marks})",
                (*params, action_id, *wanted),
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = ?", (action_id,)
            ).fetchone()
        return _action(row)

    def mark_settled(self, action_id: str, at: datetime) -> bool:
        when = v.to_micros(at, "at")
        with self._write("settle an action", durable=True) as conn:
            cursor = conn.execute(
                "UPDATE actions SET settled_us = ? WHERE id = ? AND settled_us IS NULL",
                (when, action_id),
            )
            return cursor.rowcount == 1

    def due_actions(self, now: datetime, limit: int = 100) -> list[ActionRow]:
        when = v.to_micros(now, "now")
        v.integer(limit, "limit", minimum=1)
        live = ", ".join(f"'{s}'" for s in LIVE_STATUSES)
        released = ", ".join(f"'{s}'" for s in RELEASED_STATUSES)
        with self._read("find due actions") as conn:
            rows = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE settled_us IS NULL AND"
                f" ((status IN ({live}) AND hold_until_us <= ?) OR status IN ({released}))"
                " ORDER BY hold_until_us LIMIT ?",
                (when, limit),
            ).fetchall()
        return [_action(row) for row in rows]

    def count_executed(self, tool: str, since: datetime) -> int:
        params = (tool, v.to_micros(since, "since"))
        with self._read("count executed actions") as conn:
            row = conn.execute(
                "SELECT count(*) FROM actions WHERE tool = ? AND executed_us >= ?", params
            ).fetchone()
        return int(row[0])

    # -- circuit breakers ------------------------------------------------------------------------

    def save_breaker(self, breaker: BreakerRow) -> None:
        v.breaker_row(breaker)
        params = (
            breaker.tool,
            int(breaker.tripped),
            breaker.reason,
            breaker.by,
            v.to_micros(breaker.at, "at"),
        )
        with self._write("save a circuit breaker", durable=True) as conn:
            conn.execute(
                "INSERT INTO tool_breakers (tool, tripped, reason, by_principal, at_us)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tool) DO UPDATE SET"
                " tripped = excluded.tripped, reason = excluded.reason,"
                " by_principal = excluded.by_principal, at_us = excluded.at_us",
                params,
            )

    def breakers(self) -> list[BreakerRow]:
        with self._read("list circuit breakers") as conn:
            rows = conn.execute(
                "SELECT tool, tripped, reason, by_principal, at_us FROM tool_breakers ORDER BY tool"
            ).fetchall()
        return [BreakerRow(t, bool(x), r, b, v.from_micros(a)) for t, x, r, b, a in rows]


class _ThreadReader:
    """One thread's read connection, closed when the thread (and so this holder) goes away."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()  # closing twice (after Store.close()) is a no-op


def _key(row: tuple[Any, ...]) -> KeyRow:
    key_id, principal_id, key_hash, prefix, description, created, revoked = row
    return KeyRow(
        key_id,
        principal_id,
        key_hash,
        prefix,
        description,
        v.from_micros(created),
        None if revoked is None else v.from_micros(revoked),
    )


def _micros_or_none(value: datetime | None) -> int | None:
    return None if value is None else v.to_micros(value, "time")


def _from_micros_or_none(value: int | None) -> datetime | None:
    return None if value is None else v.from_micros(value)


def _action(row: tuple[Any, ...]) -> ActionRow:
    return action_from_row(row, v.from_micros, _from_micros_or_none)


def _checkpoint(row: tuple[Any, ...]) -> CheckpointRow:
    size, root_hash, signed_blob, at = row
    return CheckpointRow(int(size), bytes(root_hash), bytes(signed_blob), v.from_micros(at))


def _closed_error() -> StorageUnavailable:
    return StorageUnavailable(
        "the SQLite store is closed", hint="open a new store with charter.storage.open_store"
    )


def _content_conflict(ref: str) -> Conflict:
    return Conflict(
        f"different audit content is already stored under ref {ref!r}",
        hint="content is never replaced; erase it first if it must change",
    )


def _fork_conflict(size: int) -> Conflict:
    return Conflict(
        f"a checkpoint for tree size {size} with a different root hash is already stored",
        hint="the audit log may have been altered; run `charter audit verify`",
    )


def _hint(exc: sqlite3.Error, busy_timeout: float) -> str:
    message = str(exc).lower()
    if "locked" in message or "busy" in message:
        return (
            f"another connection held the write lock for more than {busy_timeout:g} s; "
            "check for a stuck charter process using the same file"
        )
    if "unable to open" in message or "readonly" in message or "read-only" in message:
        return "check that the directory exists and is writable by this user"
    if "disk" in message or "full" in message or "i/o" in message:
        return "check free disk space and the health of the disk holding the database"
    if "not a database" in message or "malformed" in message:
        return "the file is not a healthy SQLite database; restore it from a backup"
    return "check that the file is a Charter database and that its disk is healthy"
