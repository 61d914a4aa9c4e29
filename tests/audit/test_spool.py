"""The audit spool: a database outage loses no acknowledged record, and order is kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from charter.audit.log import AuditLog, Draft, open_keys, stored_checkpoints, stored_leaf_bytes
from charter.audit.records import RecordKind
from charter.audit.spool import Spool
from charter.audit.verify import verify_log
from charter.errors import StorageUnavailable
from charter.storage import AuditLeaf, Store, open_store


class Flaky:
    """A real store whose audit appends fail while ``down`` is set (an outage)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def append_audit_built(
        self, count: int, build: Callable[[int], Sequence[AuditLeaf]], *, flush: bool = True
    ) -> list[int]:
        if self.down.is_set():
            raise StorageUnavailable("database is down (test)")
        return self.store.append_audit_built(count, build, flush=flush)

    def audit_size(self) -> int:
        if self.down.is_set():
            raise StorageUnavailable("database is down (test)")
        return self.store.audit_size()


def draft(i: int) -> Draft:
    return Draft(kind=RecordKind.VERDICT, request_id=f"req-{i}", principal="app")


def test_outage_spools_then_replays_in_order(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    store.migrate()
    flaky = Flaky(store)
    keys = open_keys(tmp_path / "state")
    log = AuditLog(
        flaky,
        keys,
        spool=Spool(tmp_path / "state" / "spool.jsonl"),  # type: ignore[arg-type]
        retry_s=0.05,
    )
    assert log.append_sync(draft(0)) == 0
    flaky.down.set()
    spooled = [log.append_sync(draft(i)) for i in range(1, 6)]
    assert spooled == [None] * 5  # acknowledged: durable on local disk
    flaky.down.clear()
    time.sleep(0.1)  # past the retry period: the writer asks the store again
    assert log.append_sync(draft(6)) == 6  # the spool drains first, so order holds
    log.close()
    records = [r.decode() for r in stored_leaf_bytes(store)]
    assert [f"req-{i}" in r for i, r in enumerate(records)] == [True] * 7
    assert verify_log(
        stored_leaf_bytes(store), stored_checkpoints(store), keys.signing.public_key
    ).ok
    store.close()


def test_replay_after_a_crash_mid_replay_does_not_duplicate(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    store.migrate()
    keys = open_keys(tmp_path / "state")
    spool = Spool(tmp_path / "state" / "spool.jsonl")
    flaky = Flaky(store)
    flaky.down.set()
    log = AuditLog(flaky, keys, spool=spool, retry_s=60)  # type: ignore[arg-type]
    for i in range(4):
        assert log.append_sync(draft(i)) is None
    # Simulate a crash after the replay committed but before the spool was advanced: the log
    # holds the records and the spool still lists them.
    flaky.down.clear()
    entries = spool.pending()
    from charter.audit.log import Prepared, draft_from_json

    log._append([Prepared.of(draft_from_json(e)) for e in entries[:2]])
    log.close()  # drains: entries 0-1 are found in the log and skipped, 2-3 appended
    ids = [r.decode() for r in stored_leaf_bytes(store)]
    assert sum(entries[0]["details"]["spool_id"] in r for r in ids) == 1
    assert sum(entries[3]["details"]["spool_id"] in r for r in ids) == 1
    assert not spool.has_pending()
    store.close()


def test_prepared_leaf_is_byte_identical_to_the_record_encoding() -> None:
    """The writer splices index and time into bytes encoded by the submitter; the result must be
    exactly the canonical encoding (quotes and keys inside values must not confuse it)."""
    from charter.audit.log import Prepared
    from charter.audit.records import Content, leaf_bytes, utc_now

    tricky = 'he said "index":0,"kind": and "time":"1970-01-01T00:00:00.000000Z" \u2028 \x01'
    for time_given in (None, "2026-01-02T03:04:05.000006Z"):
        d = Draft(
            kind=RecordKind.VERDICT,
            request_id="r",
            principal="p",
            reason=tricky,
            content=(Content.redacted("input", tricky),),
            details={"x": tricky, "n": 3},
            time=time_given,
        )
        now = utc_now()
        for index in (0, 7, 123456789):
            assert Prepared.of(d).leaf(index, now) == leaf_bytes(d.record(index, now))


def test_coroutines_waiting_on_one_batch_each_get_their_number(tmp_path: Path) -> None:
    """Pins: one wake-up per batch and event loop (not per record); a cancelled request's record
    is committed all the same, and settling it does not raise."""
    import asyncio

    store = open_store(f"sqlite:///{tmp_path}/a.db")
    store.migrate()
    log = AuditLog(store, open_keys(tmp_path / "state"))

    async def run() -> list[int | None]:
        tasks = [asyncio.create_task(log.append(draft(i))) for i in range(200)]
        await asyncio.sleep(0)  # every task has queued its record and waits for the commit
        tasks[7].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if isinstance(r, int)]

    numbers = asyncio.run(run())
    log.close()
    assert len(numbers) == 199 and len(set(numbers)) == 199
    assert store.audit_size() == 200  # the cancelled request's record was still committed
    store.close()
