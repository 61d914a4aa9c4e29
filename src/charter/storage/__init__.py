"""Where Charter keeps its state: one narrow interface, a SQLite and a PostgreSQL implementation.

Open a store with ``open_store(url)`` and call ``migrate()`` once at start; everything else is
the ``Store`` interface. See docs/storage.md.
"""

from charter.storage.base import (
    ACTION_STATUSES,
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
from charter.storage.connect import open_store, redact_url

__all__ = [
    "ACTION_STATUSES",
    "ActionChange",
    "ActionRow",
    "AuditLeaf",
    "BreakerRow",
    "CharterVersionRow",
    "CheckpointRow",
    "KeyRow",
    "SpendRow",
    "Store",
    "open_store",
    "redact_url",
]
