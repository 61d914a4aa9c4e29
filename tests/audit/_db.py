"""Raw SQL on a test database behind the Store's back, as an attacker with database access."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg


def sql(store_url: str, statement: str, *params: Any) -> None:
    """Run one statement (``?`` placeholders) on the SQLite or PostgreSQL test database."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement, params)
        return
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
