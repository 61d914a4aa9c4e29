"""The durable spend ledger: settled costs written in batches, and the sums budgets seed from."""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Sequence

from charter.errors import StorageUnavailable
from charter.storage.base import SpendRow, Store

log = logging.getLogger(__name__)


class StoreLedger:
    """``SpendLedger`` over the store: a team's spend is the sum over its members."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def spent(self, principals: Sequence[str], start: dt.datetime, end: dt.datetime) -> int:
        return sum(self.store.spend_between(p, start, end) for p in principals)


class SpendWriter:
    """Writes settled spend off the request path: one background thread, batched inserts.

    ``add`` appends to a deque and returns; the thread wakes every ``interval_s`` and writes what
    has gathered in one transaction (no per-request wake-up: that cost about 6% of the gateway's
    CPU in bench/gateway's profile). Rows are idempotent by request id, so a batch retried after a
    failed commit is harmless. If the database is unreachable the rows wait in memory (bounded)
    and are retried; the audit record of each request carries its cost too, so spend stays
    provable even if this process dies first.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch: int = 1024,
        interval_s: float = 0.05,
        max_pending: int = 100_000,
    ) -> None:
        self.store = store
        self.batch = batch
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._rows: collections.deque[SpendRow] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="charter-spend", daemon=True)
        self._thread.start()

    def add(self, row: SpendRow) -> None:
        if len(self._rows) >= self.max_pending:
            log.error("spend backlog full; writing %s synchronously", row.request_id)
            self.store.add_spend([row])
            return
        self._rows.append(row)  # deque appends are atomic: no lock, no wake-up

    def _take(self) -> list[SpendRow]:
        out: list[SpendRow] = []
        while self._rows and len(out) < self.batch:
            out.append(self._rows.popleft())
        return out

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval_s)
            while batch := self._take():
                try:
                    self.store.add_spend(batch)
                except StorageUnavailable as exc:
                    self._rows.extendleft(reversed(batch))  # keep them, in order
                    if stopping:
                        log.error(
                            "dropping %d unwritten spend rows at shutdown: %s", len(self._rows), exc
                        )
                        return
                    log.warning("spend ledger write failed, will retry: %s", exc)
                    break
            if stopping:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending and stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
