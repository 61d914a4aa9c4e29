"""The scale-out store: PostgreSQL through psycopg 3 and its connection pool.

Every gateway replica opens one of these against the same database. Reads run on autocommit
connections (one round trip each); writes run in explicit transactions. The audit log's order comes
from one sequencer row that each appender locks, so all replicas share one gap-free order.
psycopg is an optional extra (``charter[scale]``), imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from charter.errors import (
    ConfigurationError,
    Conflict,
    InternalError,
    MissingDependency,
    StorageUnavailable,
)
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
from charter.storage.connect import redact_url, scrub, url_secrets
from charter.storage.rows import action_from_row, action_sets
from charter.storage.schema import check_not_newer, latest_version, load_migrations

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    Connection = psycopg.Connection[tuple[Any, ...]]

# pg_advisory_xact_lock key that serialises migrations ("Charter" in ASCII): any two processes
# migrating the same database queue on it, and it is released when the transaction ends.
_MIGRATION_LOCK = 0x43_68_61_72_74_65_72

_KEY_COLUMNS = "id, principal_id, key_hash, prefix, description, created_at, revoked_at"
_TOKEN_COLUMNS = "id, principal_id, token_hash, prefix, description, created_at, revoked_at"
_ACTION_COLUMNS = (
    "id, approval_id, tool, arguments_json, principal_id, subject, conversation_id, excerpt,"
    " status, claims_json, control_id, decision_ids_json, reason, approval_control_id,"
    " reviewer_roles_json, created_at, hold_until, deadline, reviewer, review_reason,"
    " reviewed_at, executed_at, outcome_json, settled_at, updated_at, content_key"
)


_LOCK_KEY = "hashtextextended(%s || ':' || current_schema(), 0)"
"""The advisory-lock key of a named lock in this schema (see ``PostgresStore.exclusive``)."""


class PostgresStore(Store):
    """A ``Store`` in a PostgreSQL database, shared by any number of processes."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
    ) -> None:
        """Connect to ``url`` (``postgresql://user:password@host:port/dbname?options``).

        ``max_size`` bounds the pooled connections; ``timeout`` is how many seconds to wait for
        the server at start and for a free connection per call before ``StorageUnavailable``.
        """
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            package = "psycopg-pool" if (exc.name or "").startswith("psycopg_pool") else "psycopg"
            raise MissingDependency(package, "scale", "PostgreSQL storage") from None

        self._secrets = url_secrets(url)
        self._shown = redact_url(url)
        self._where = _server(url)
        self._timeout = timeout
        self._driver_error: type[Exception] = psycopg.Error
        self._undefined_table: type[Exception] = psycopg.errors.UndefinedTable
        self._closed = False
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"invalid PostgreSQL URL {self._shown}: {self._say(exc)}",
                hint="use postgresql://user:password@host:5432/dbname",
            ) from None
        # autocommit: a read is one round trip; writes open their own transaction explicitly.
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in given:
            # libpq counts whole seconds and treats anything under 2 as 2.
            kwargs["connect_timeout"] = max(2, round(timeout))
        if "application_name" not in given:
            kwargs["application_name"] = "charter"

        # One direct connection first: when the server is down or refuses us, the driver's own
        # reason ("connection refused", "password authentication failed") is what the operator
        # needs, and a pool would only report that it timed out.
        try:
            psycopg.connect(url, **kwargs).close()
        except psycopg.Error as exc:
            # "from None": the driver's exception is summarised (scrubbed) in the message; its
            # chained traceback is not shown, so nothing unscrubbed can reach a log.
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self._shown}: {self._say(exc)}",
                hint=f"check that PostgreSQL is running and accepts this user at {self._where}",
            ) from None
        pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            name="charter-storage",
            configure=_relaxed_commits,
            # A connection the server dropped (restart, failover, network cut) is found and
            # replaced when it is next taken from the pool, so an outage ends when the database
            # is back instead of failing every request that draws a dead connection.
            check=ConnectionPool.check_connection,
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            pool.close()
            raise StorageUnavailable(
                f"cannot fill the PostgreSQL connection pool for {self._shown}: {self._say(exc)}",
                hint=f"check that PostgreSQL at {self._where} allows {min_size} more connections",
            ) from None
        self._pool = pool

    # -- connections and transactions ------------------------------------------------------------

    @contextmanager
    def _conn(self, what: str) -> Iterator[Connection]:
        """A pooled connection; any driver error becomes ``StorageUnavailable``."""
        if self._closed:
            raise StorageUnavailable(
                "the PostgreSQL store is closed",
                hint="open a new store with charter.storage.open_store",
            )
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except self._driver_error as exc:
            raise StorageUnavailable(
                f"PostgreSQL at {self._shown} could not {what}: {self._say(exc)}",
                hint=self._hint(exc),
            ) from exc

    @contextmanager
    def _write(self, what: str, *, durable: bool = True) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``durable`` waits for the commit to reach the server's disk (see ``_relaxed_commits``).
        """
        with self._conn(what) as conn, conn.transaction():
            if durable:
                conn.execute("SET LOCAL synchronous_commit = on")
            yield conn

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """A session-level advisory lock (``pg_try_advisory_lock``) on one pooled connection,
        held for the block and released before the connection goes back to the pool; if the
        holder dies, PostgreSQL releases it with the session. Advisory locks are database-wide,
        so the key includes the schema: deployments in separate schemas never contend."""
        with self._conn(f"take the lock {name!r}") as conn:
            row = conn.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY})", (name,)).fetchone()
            conn.commit()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})", (name,))
                    conn.commit()

    def _say(self, exc: Exception) -> str:
        """The driver's message on one line, with the password scrubbed out."""
        return scrub(" ".join(str(exc).split()), self._secrets)

    def _hint(self, exc: Exception) -> str:
        if isinstance(exc, self._undefined_table):
            return "the schema is missing or old; call Store.migrate() before using the store"
        if "pool" in type(exc).__module__:
            return (
                f"no connection became free within {self._timeout:g} s; check that PostgreSQL "
                f"at {self._where} is up, or raise the pool's max_size"
            )
        return f"check that PostgreSQL is running at {self._where}, and its server log"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    # -- migrations ------------------------------------------------------------------------------

    def migrate(self) -> int:
        with self._write("apply schema migrations") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = _one(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"))
            check_not_newer(int(current), self.backend)
            for migration in load_migrations(self.backend)[int(current) :]:
                # bytes, not str: the SQL comes from a package file, and several statements in
                # one execute() without parameters go through the simple query protocol.
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        return latest_version(self.backend)

    def schema_version(self) -> int:
        with self._conn("read the schema version") as conn:
            if _one(conn.execute("SELECT to_regclass('schema_migrations')")) is None:
                return 0
            return int(
                _one(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"))
            )

    # -- charter versions ------------------------------------------------------------------------

    def save_charter_version(self, hash: str, canonical_json: str, at: datetime) -> None:
        params = (v.text(hash, "hash"), v.text(canonical_json, "canonical_json"), v.aware(at, "at"))
        with self._write("save a charter version") as conn:
            conn.execute(
                "INSERT INTO charter_versions (hash, canonical_json, first_seen_at)"
                " VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING",
                params,
            )

    def charter_versions(self) -> list[CharterVersionRow]:
        with self._conn("list charter versions") as conn:
            rows = conn.execute(
                "SELECT hash, canonical_json, first_seen_at FROM charter_versions"
                " ORDER BY first_seen_at, hash"
            ).fetchall()
        return [CharterVersionRow(h, j, _utc(t)) for h, j, t in rows]

    # -- virtual keys ----------------------------------------------------------------------------

    def create_key(self, key: KeyRow) -> None:
        v.key_row(key)
        with self._write("create a key") as conn:
            cursor = conn.execute(
                f"INSERT INTO virtual_keys ({_KEY_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    key.id,
                    key.principal_id,
                    key.key_hash,
                    key.prefix,
                    key.description,
                    key.created_at,
                    key.revoked_at,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"a key with id {key.id!r} or the same hash already exists",
                    hint="generate a new key id and secret",
                )

    def find_key(self, key_hash: str) -> KeyRow | None:
        with self._conn("look up a key") as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE key_hash = %s", (key_hash,)
            ).fetchone()
        return None if row is None else _key(row)

    def list_keys(self, principal_id: str | None = None) -> list[KeyRow]:
        with self._conn("list keys") as conn:
            if principal_id is None:
                rows = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM virtual_keys ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE principal_id = %s"
                    " ORDER BY created_at, id",
                    (principal_id,),
                ).fetchall()
        return [_key(row) for row in rows]

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        when = v.aware(at, "at")
        with self._write("revoke a key") as conn:
            cursor = conn.execute(
                "UPDATE virtual_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (when, key_id),
            )
            return cursor.rowcount == 1

    # -- console sign-in tokens ------------------------------------------------------------------

    def create_console_token(self, token: KeyRow) -> None:
        v.key_row(token)
        with self._write("create a console token") as conn:
            cursor = conn.execute(
                f"INSERT INTO console_tokens ({_TOKEN_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    token.id,
                    token.principal_id,
                    token.key_hash,
                    token.prefix,
                    token.description,
                    token.created_at,
                    token.revoked_at,
                ),
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"a console token with id {token.id!r} or the same hash already exists",
                    hint="generate a new token id and secret",
                )

    def find_console_token(self, token_hash: str) -> KeyRow | None:
        with self._conn("look up a console token") as conn:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM console_tokens WHERE token_hash = %s", (token_hash,)
            ).fetchone()
        return None if row is None else _key(row)

    def list_console_tokens(self, principal_id: str | None = None) -> list[KeyRow]:
        with self._conn("list console tokens") as conn:
            if principal_id is None:
                rows = conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM console_tokens ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM console_tokens WHERE principal_id = %s"
                    " ORDER BY created_at, id",
                    (principal_id,),
                ).fetchall()
        return [_key(row) for row in rows]

    def revoke_console_token(self, token_id: str, at: datetime) -> bool:
        when = v.aware(at, "at")
        with self._write("revoke a console token") as conn:
            cursor = conn.execute(
                "UPDATE console_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (when, token_id),
            )
            return cursor.rowcount == 1

    # -- spend -----------------------------------------------------------------------------------

    def add_spend(self, rows: Sequence[SpendRow]) -> int:
        v.spend_rows(rows)
        if not rows:
            return 0
        # One statement for the whole batch (arrays unnested server-side): one round trip, and
        # rowcount is exactly the number of new rows.
        columns = (
            [r.request_id for r in rows],
            [r.principal_id for r in rows],
            [r.model for r in rows],
            [r.input_tokens for r in rows],
            [r.output_tokens for r in rows],
            [r.cost_micro_usd for r in rows],
            [v.aware(r.at, "at") for r in rows],
        )
        with self._write("record spend", durable=False) as conn:
            cursor = conn.execute(
                "INSERT INTO spend (request_id, principal_id, model, input_tokens,"
                " output_tokens, cost_micro_usd, at)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
                " %s::bigint[], %s::bigint[], %s::timestamptz[])"
                " ON CONFLICT (request_id) DO NOTHING",
                columns,
            )
            return cursor.rowcount

    def spend_between(self, principal_id: str, start: datetime, end: datetime) -> int:
        params = (principal_id, v.aware(start, "start"), v.aware(end, "end"))
        with self._conn("sum spend") as conn:
            total = _one(
                conn.execute(
                    "SELECT coalesce(sum(cost_micro_usd), 0) FROM spend"
                    " WHERE principal_id = %s AND at >= %s AND at < %s",
                    params,
                )
            )
        return int(total)

    # -- counters --------------------------------------------------------------------------------

    def add_counter(self, key: str, window_start: datetime, amount: int) -> int:
        params = (
            v.text(key, "key"),
            v.aware(window_start, "window_start"),
            v.integer(amount, "amount"),
        )
        # One upsert statement is atomic on its own, even when two sessions create the row.
        with self._conn("add to a counter") as conn:
            total = _one(
                conn.execute(
                    "INSERT INTO counters (key, window_start, total) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key, window_start)"
                    " DO UPDATE SET total = counters.total + excluded.total RETURNING total",
                    params,
                )
            )
        return int(total)

    def get_counter(self, key: str, window_start: datetime) -> int:
        params = (key, v.aware(window_start, "window_start"))
        with self._conn("read a counter") as conn:
            row = conn.execute(
                "SELECT total FROM counters WHERE key = %s AND window_start = %s", params
            ).fetchone()
        return 0 if row is None else int(row[0])

    # -- audit log -------------------------------------------------------------------------------

    def append_audit_built(
        self, count: int, build: Callable[[int], Sequence[AuditLeaf]], *, flush: bool = True
    ) -> list[int]:
        if count <= 0:
            return []
        with self._write("append to the audit log", durable=flush) as conn:
            # The UPDATE locks the sequencer row until this transaction ends: appenders from
            # every replica queue here, and a rollback hands the numbers back, so no gaps.
            row = conn.execute(
                "UPDATE audit_sequencer SET next_seq = next_seq + %s WHERE id = 1"
                " RETURNING next_seq - %s",
                (count, count),
            ).fetchone()
            if row is None:
                raise InternalError(
                    "the audit sequencer row is missing",
                    hint="the database was altered by hand; restore it or re-run migrations",
                )
            first = int(row[0])
            leaves = v.built_leaves(build, first, count)
            conn.execute(
                "INSERT INTO audit_leaves (seq, leaf_hash, record_json, at)"
                " SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[], %s::timestamptz[])",
                (
                    list(range(first, first + count)),
                    [bytes(x.leaf_hash) for x in leaves],
                    [x.record_json for x in leaves],
                    [v.aware(x.at, "at") for x in leaves],
                ),
            )
        return list(range(first, first + count))

    def audit_size(self) -> int:
        # Only committed appends are visible, and they are gap-free from 0.
        with self._conn("read the audit log size") as conn:
            return int(_one(conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_leaves")))

    def audit_leaves(self, start: int, end: int) -> list[AuditLeaf]:
        v.audit_range(start, end)
        with self._conn("read the audit log") as conn:
            # A pruned body is stored as '' (see audit_prune); a canonical record never is.
            rows = conn.execute(
                "SELECT leaf_hash, nullif(record_json, ''), at FROM audit_leaves"
                " WHERE seq >= %s AND seq < %s ORDER BY seq",
                (start, end),
            ).fetchall()
        return [AuditLeaf(bytes(h), j, _utc(t)) for h, j, t in rows]

    def audit_leaf_hashes(self, start: int, end: int) -> list[bytes]:
        v.audit_range(start, end)
        with self._conn("read the audit log's leaf hashes") as conn:
            rows = conn.execute(
                "SELECT leaf_hash FROM audit_leaves WHERE seq >= %s AND seq < %s ORDER BY seq",
                (start, end),
            ).fetchall()
        return [bytes(h) for (h,) in rows]

    def audit_prune(self, before_seq: int) -> int:
        v.integer(before_seq, "before_seq", minimum=0)
        # The column stays NOT NULL, as on SQLite: '' marks a pruned body, None when read.
        with self._write("prune audit record bodies") as conn:
            cursor = conn.execute(
                "UPDATE audit_leaves SET record_json = '' WHERE seq < %s AND record_json <> ''",
                (before_seq,),
            )
            return cursor.rowcount

    def audit_content_put(self, ref: str, text: str) -> None:
        params = (v.text(ref, "ref"), v.text(text, "text", allow_empty=True))
        with self._write("store audit content") as conn:
            cursor = conn.execute(
                "INSERT INTO audit_content (ref, content) VALUES (%s, %s)"
                " ON CONFLICT (ref) DO NOTHING",
                params,
            )
            if cursor.rowcount == 0:
                stored = conn.execute(
                    "SELECT content FROM audit_content WHERE ref = %s", (ref,)
                ).fetchone()
                if stored is not None and stored[0] != text:
                    raise Conflict(
                        f"different audit content is already stored under ref {ref!r}",
                        hint="content is never replaced; erase it first if it must change",
                    )

    def audit_content_get(self, ref: str) -> str | None:
        with self._conn("read audit content") as conn:
            row = conn.execute(
                "SELECT content FROM audit_content WHERE ref = %s", (ref,)
            ).fetchone()
        return None if row is None else str(row[0])

    def audit_content_erase(self, ref: str) -> bool:
        with self._write("erase audit content") as conn:
            cursor = conn.execute("DELETE FROM audit_content WHERE ref = %s", (ref,))
            return cursor.rowcount == 1

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(
        self, size: int, root_hash: bytes, signed_blob: bytes, at: datetime
    ) -> CheckpointRow:
        params = (
            v.integer(size, "size", minimum=0),
            v.blob(root_hash, "root_hash"),
            v.blob(signed_blob, "signed_blob"),
            v.aware(at, "at"),
        )
        with self._write("save a checkpoint") as conn:
            conn.execute(
                "INSERT INTO audit_checkpoints (size, root_hash, signed_blob, at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (size) DO NOTHING",
                params,
            )
            stored = conn.execute(
                "SELECT size, root_hash, signed_blob, at FROM audit_checkpoints WHERE size = %s",
                (size,),
            ).fetchone()
        if stored is None:
            raise InternalError(f"checkpoint {size} vanished right after it was saved")
        checkpoint = _checkpoint(stored)
        if checkpoint.root_hash != params[1]:
            raise Conflict(
                f"a checkpoint for tree size {size} with a different root hash is already stored",
                hint="the audit log may have been altered; run `charter audit verify`",
            )
        return checkpoint

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self._conn("read the latest checkpoint") as conn:
            row = conn.execute(
                "SELECT size, root_hash, signed_blob, at FROM audit_checkpoints"
                " ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _checkpoint(row)

    def checkpoints(self) -> list[CheckpointRow]:
        with self._conn("list checkpoints") as conn:
            rows = conn.execute(
                "SELECT size, root_hash, signed_blob, at FROM audit_checkpoints ORDER BY size"
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
            action.created_at,
            action.hold_until,
            action.deadline,
            action.reviewer,
            action.review_reason,
            action.reviewed_at,
            action.executed_at,
            action.outcome_json,
            action.settled_at,
            action.updated_at,
            action.content_key,
        )
        marks = ", ".join(["%s"] * len(params))
        with self._write("store an action") as conn:
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
        with self._conn("read an action") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = %s", (action_id,)
            ).fetchone()
        return None if row is None else _action(row)

    def find_approval(self, approval_id: str) -> ActionRow | None:
        with self._conn("read an approval") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE approval_id = %s", (approval_id,)
            ).fetchone()
        return None if row is None else _action(row)

    def find_content_review(self, content_key: str) -> ActionRow | None:
        with self._conn("read a content review") as conn:
            row = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE content_key = %s"
                " ORDER BY created_at DESC, id LIMIT 1",
                (content_key,),
            ).fetchone()
        return None if row is None else _action(row)

    def list_actions(
        self, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRow]:
        v.integer(limit, "limit", minimum=1)
        with self._conn("list actions") as conn:
            if statuses is None:
                rows = conn.execute(
                    f"SELECT {_ACTION_COLUMNS} FROM actions ORDER BY created_at DESC, id LIMIT %s",
                    (limit,),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_ACTION_COLUMNS} FROM actions WHERE status = ANY(%s)"
                    " ORDER BY created_at DESC, id LIMIT %s",
                    (v.statuses(statuses), limit),
                ).fetchall()
        return [_action(row) for row in rows]

    def update_action(
        self, action_id: str, expected: Sequence[str], change: ActionChange
    ) -> ActionRow | None:
        wanted = v.statuses(expected, "expected")
        v.action_change(change)
        sets, params = action_sets(change, v.aware(change.at, "at"), "%s", lambda t: t)
        # One UPDATE tests the status and sets it: row locks make concurrent ones take turns,
        # and the second re-checks the WHERE clause against the first one's result.
        with self._write("update an action") as conn:
            row = conn.execute(
                f"UPDATE actions SET {sets} WHERE id = %s AND status = ANY(%s)"
                f" RETURNING {_ACTION_COLUMNS}",
                (*params, action_id, wanted),
            ).fetchone()
        return None if row is None else _action(row)

    def mark_settled(self, action_id: str, at: datetime) -> bool:
        when = v.aware(at, "at")
        with self._write("settle an action") as conn:
            cursor = conn.execute(
                "UPDATE actions SET settled_at = %s WHERE id = %s AND settled_at IS NULL",
                (when, action_id),
            )
            return cursor.rowcount == 1

    def due_actions(self, now: datetime, limit: int = 100) -> list[ActionRow]:
        when = v.aware(now, "now")
        v.integer(limit, "limit", minimum=1)
        with self._conn("find due actions") as conn:
            rows = conn.execute(
                f"SELECT {_ACTION_COLUMNS} FROM actions WHERE settled_at IS NULL AND"
                " ((status = ANY(%s) AND hold_until <= %s) OR status = ANY(%s))"
                " ORDER BY hold_until LIMIT %s",
                (list(LIVE_STATUSES), when, list(RELEASED_STATUSES), limit),
            ).fetchall()
        return [_action(row) for row in rows]

    def count_executed(self, tool: str, since: datetime) -> int:
        params = (tool, v.aware(since, "since"))
        with self._conn("count executed actions") as conn:
            total = _one(
                conn.execute(
                    "SELECT count(*) FROM actions WHERE tool = %s AND executed_at >= %s", params
                )
            )
        return int(total)

    # -- circuit breakers ------------------------------------------------------------------------

    def save_breaker(self, breaker: BreakerRow) -> None:
        v.breaker_row(breaker)
        params = (breaker.tool, breaker.tripped, breaker.reason, breaker.by, breaker.at)
        with self._write("save a circuit breaker") as conn:
            conn.execute(
                "INSERT INTO tool_breakers (tool, tripped, reason, by_principal, at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tool) DO UPDATE SET"
                " tripped = excluded.tripped, reason = excluded.reason,"
                " by_principal = excluded.by_principal, at = excluded.at",
                params,
            )

    def breakers(self) -> list[BreakerRow]:
        with self._conn("list circuit breakers") as conn:
            rows = conn.execute(
                "SELECT tool, tripped, reason, by_principal, at FROM tool_breakers ORDER BY tool"
            ).fetchall()
        return [BreakerRow(t, bool(x), r, b, _utc(a)) for t, x, r, b, a in rows]


def _relaxed_commits(conn: Connection) -> None:
    """Run every new pooled connection with ``synchronous_commit = off``.

    The PostgreSQL twin of SQLite's ``synchronous=NORMAL``: a commit returns before its WAL is
    flushed, so a server crash can lose the last fraction of a second of commits (never corrupt
    anything). That is the accepted cost for the per-request writes (counters, spend), which
    otherwise wait for an fsync each (about 4 ms here). Every other write sets it back on for its
    own transaction.
    """
    conn.execute("SET synchronous_commit = off")


def _one(cursor: psycopg.Cursor[tuple[Any, ...]]) -> Any:
    """The single value of a single-row query."""
    row = cursor.fetchone()
    if row is None:
        raise InternalError("a single-row query returned no row")
    return row[0]


def _utc(value: datetime) -> datetime:
    # psycopg returns timestamptz in the session's time zone; callers always get UTC.
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _action(row: tuple[Any, ...]) -> ActionRow:
    return action_from_row(row, _utc, _utc_or_none)


def _key(row: tuple[Any, ...]) -> KeyRow:
    key_id, principal_id, key_hash, prefix, description, created, revoked = row
    return KeyRow(
        key_id,
        principal_id,
        key_hash,
        prefix,
        description,
        _utc(created),
        None if revoked is None else _utc(revoked),
    )


def _checkpoint(row: tuple[Any, ...]) -> CheckpointRow:
    size, root_hash, signed_blob, at = row
    return CheckpointRow(int(size), bytes(root_hash), bytes(signed_blob), _utc(at))


def _server(url: str) -> str:
    """``host:port`` of a URL for hints, never its credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the configured host"
    return f"{host}:{port}"
