"""Many threads and processes at once: the properties the gateway and audit log rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from charter.storage import AuditLeaf, SpendRow, Store, open_store
from charter.storage.schema import latest_version

T = TypeVar("T")
WINDOW = datetime(2025, 3, 1, tzinfo=UTC)


def run_together(workers: int, task: Callable[[int], T]) -> list[T]:
    """Run ``task(i)`` for i in range(workers) on as many threads, released at the same instant."""
    barrier = threading.Barrier(workers)

    def start(i: int) -> T:
        barrier.wait()
        return task(i)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(start, range(workers)))


# A child process that waits until a shared start time, then runs one storage action, so several
# processes hit the database at the same moment.
CHILD = """
import json, sys, time
from datetime import datetime, timezone
from charter.storage import AuditLeaf, open_store

url, action, start_at, worker = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
from charter.storage import sqlite, postgres  # import before the barrier, not after
time.sleep(max(0.0, start_at - time.time()))
store = open_store(url)  # opened after the barrier: the first open of a new file races too
if action == "migrate":
    print(json.dumps(store.migrate()))
else:
    now = datetime.now(timezone.utc)
    seqs = []
    for i in range(50):
        record = json.dumps({"worker": worker, "i": i})
        seqs += store.append_audit([AuditLeaf(bytes([worker]) * 32, record, now)])
    print(json.dumps(seqs))
store.close()
"""


def run_processes(url: str, action: str, count: int) -> list[object]:
    start_at = time.time() + 1.0  # long enough for every child to import and connect first
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, action, str(start_at), str(worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(count)
    ]
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=60))
    finally:
        for child in children:  # a failed or hung child must not outlive the test
            if child.poll() is None:
                child.kill()
                child.communicate()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    return [json.loads(out) for out, _ in outputs]


def test_migrations_from_threads_at_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    try:
        versions = run_together(4, lambda i: stores[i].migrate())
        assert versions == [latest_version(stores[0].backend)] * 4
        assert stores[0].schema_version() == latest_version(stores[0].backend)
        assert stores[0].append_audit([AuditLeaf(b"x" * 32, "{}", WINDOW)]) == [0]
    finally:
        for store in stores:
            store.close()


def test_migrations_from_processes_at_once(store_url: str) -> None:
    versions = run_processes(store_url, "migrate", 3)
    with open_store(store_url) as store:
        assert versions == [latest_version(store.backend)] * 3
        assert store.migrate() == latest_version(store.backend)


def test_audit_appends_from_8_threads_are_gap_free(store: Store) -> None:
    """8 threads x 200 leaves, in batches of 1 to 4: exactly 0..1599, each batch consecutive."""

    def append(worker: int) -> list[tuple[list[int], list[str]]]:
        done: list[tuple[list[int], list[str]]] = []
        i = 0
        while i < 200:
            size = min(1 + (i // 3) % 4, 200 - i)
            records = [json.dumps({"w": worker, "i": i + k}) for k in range(size)]
            leaves = [AuditLeaf(bytes([worker]) * 32, r, WINDOW) for r in records]
            done.append((store.append_audit(leaves), records))
            i += size
        return done

    results = run_together(8, append)

    expected: dict[int, str] = {}
    for batches in results:
        for seqs, records in batches:
            assert seqs == list(range(seqs[0], seqs[0] + len(records)))  # a batch is contiguous
            expected.update(zip(seqs, records, strict=True))
    assert sorted(expected) == list(range(1600))  # no gaps, no duplicates
    assert store.audit_size() == 1600
    stored = store.audit_leaves(0, 1600)
    assert [leaf.record_json for leaf in stored] == [expected[s] for s in range(1600)]


def test_audit_appends_from_processes_are_gap_free(store: Store, store_url: str) -> None:
    results = run_processes(store_url, "append", 3)
    seqs = sorted(s for worker in results for s in worker)  # type: ignore[attr-defined]
    assert seqs == list(range(150))
    assert store.audit_size() == 150
    leaves = store.audit_leaves(0, 150)
    # Each worker's own records appear in the order it appended them.
    for worker in range(3):
        mine = [json.loads(x.record_json)["i"] for x in leaves if x.leaf_hash[0] == worker]
        assert mine == list(range(50))


def test_counter_increments_from_threads_are_atomic(store: Store) -> None:
    def bump(_: int) -> list[int]:
        return [store.add_counter("rpm:team-a", WINDOW, 1) for _ in range(50)]

    totals = [t for batch in run_together(8, bump) for t in batch]
    assert sorted(totals) == list(range(1, 401))  # every caller saw a distinct total
    assert store.get_counter("rpm:team-a", WINDOW) == 400


def test_add_then_undo_lets_exactly_the_cap_through(store: Store) -> None:
    """The issue-5 pattern: 40 refunds at once against a cap of 3 admit exactly 3."""
    cap = 3

    def try_refund(_: int) -> bool:
        total = store.add_counter("refunds:cust-1", WINDOW, 1)
        if total > cap:
            store.add_counter("refunds:cust-1", WINDOW, -1)
            return False
        return True

    admitted = run_together(40, try_refund)
    assert admitted.count(True) == cap
    assert store.get_counter("refunds:cust-1", WINDOW) == cap


def test_the_same_spend_settled_from_threads_counts_once(store: Store) -> None:
    rows = [SpendRow(f"req-{i}", "team-a", "m", 1, 1, 1_000, WINDOW) for i in range(20)]
    inserted = run_together(6, lambda _: store.add_spend(rows))
    assert sum(inserted) == 20
    assert store.spend_between("team-a", WINDOW, WINDOW.replace(year=2026)) == 20_000


def open_file_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_short_lived_threads_do_not_leak_connections(store: Store) -> None:
    """Worker pools recycle idle threads; each one's read connection must close with it."""
    store.add_counter("k", WINDOW, 1)

    def read_in_a_new_thread() -> None:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(store.get_counter("k", WINDOW)))
        thread.start()
        thread.join()
        assert seen == [1]

    read_in_a_new_thread()  # the first may open shared files (the WAL index) for good
    before = open_file_descriptors()
    for _ in range(60):
        read_in_a_new_thread()
    assert open_file_descriptors() - before < 5
