"""A durable local spool for audit records the database could not take.

Records are appended as JSON lines and fsynced before the request they belong to is acknowledged,
so a crash (even ``kill -9``) loses none. They are replayed into the log in order when the database
is back; while anything is spooled, newer records are spooled behind it so the log's order is the
order of events. Each spooled record carries a ``spool_id`` in its details: replay skips ids the log
already holds, so a crash between a replayed batch's commit and the spool's bookkeeping never
duplicates a record.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Spool:
    """Append-only JSON lines plus a count of lines already replayed (both fsynced)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_suffix(self.path.suffix + ".replayed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = len(self.pending())  # entries waiting; kept so checking it is free

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Write entries and fsync before returning."""
        lines = [json.dumps(e, separators=(",", ":")) + "\n" for e in entries]
        data = "".join(lines)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._count += len(lines)

    def _replayed(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def pending(self) -> list[dict[str, Any]]:
        """Entries not yet replayed, oldest first (a torn last line from a crash is dropped: its
        request was never acknowledged, because the fsync had not returned)."""
        with self._lock:
            if not self.path.exists():
                return []
            lines = self.path.read_text().splitlines()
            out = []
            for line in lines[self._replayed() :]:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    break
            return out

    def has_pending(self) -> bool:
        return self._count > 0

    def advance(self, count: int) -> None:
        """Mark ``count`` more entries as replayed; when all are, start a fresh file."""
        with self._lock:
            replayed = self._replayed() + count
            total = len(self.path.read_text().splitlines()) if self.path.exists() else 0
            self._count = max(0, total - replayed)
            if replayed >= total:
                self.path.unlink(missing_ok=True)
                self.offset_path.unlink(missing_ok=True)
                return
            tmp = self.offset_path.with_suffix(".tmp")
            tmp.write_text(str(replayed))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.offset_path)
