"""The durable spend ledger: settled costs written in batches, and the sums budgets seed from."""

from __future__ import annotations

import datetime as dt
import logging
import queue
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

    Rows are idempotent by request id, so a batch retried after a failed commit is harmless. If the
    database is unreachable the rows wait in memory (bounded) and are retried; the audit record of
    each request carries its cost too, so spend stays provable even if this process dies first.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch: int = 256,
        interval_s: float = 0.05,
        max_pending: int = 100_000,
    ) -> None:
        self.store = store
        self.batch = batch
        self.interval_s = interval_s
        self._queue: queue.Queue[SpendRow | None] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="charter-spend", daemon=True)
        self._thread.start()

    def add(self, row: SpendRow) -> None:
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            log.error("spend queue full; writing %s synchronously", row.request_id)
            self.store.add_spend([row])

    def _run(self) -> None:
        pending: list[SpendRow] = []
        stopping = False
        while not stopping or pending:
            try:
                item = self._queue.get(timeout=self.interval_s)
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
                    while len(pending) < self.batch:
                        more = self._queue.get_nowait()
                        if more is None:
                            stopping = True
                            break
                        pending.append(more)
            except queue.Empty:
                pass
            if pending:
                try:
                    self.store.add_spend(pending)
                    pending = []
                except StorageUnavailable as exc:
                    log.warning("spend ledger write failed, will retry: %s", exc)
                    if stopping:
                        log.error("dropping %d unwritten spend rows at shutdown", len(pending))
                        return
                    threading.Event().wait(1.0)

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
