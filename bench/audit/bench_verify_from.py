"""Benchmark: a full verification of a stored log against one from a trusted checkpoint on.

Run:  .venv/bin/python bench/audit/bench_verify_from.py [--records 1000000] [--tail 10000]

Appends ``--records`` synthetic verdict records (about 730 bytes each) to a fresh SQLite store,
signs checkpoints at ``records - tail`` and ``records``, then times what `charter audit verify`
does (every body read and hashed) and what `charter audit verify --from-checkpoint` does (the
leaf hashes below the trusted checkpoint, the bodies after it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time

from charter.audit import (
    AuditRecord,
    RecordKind,
    SigningKey,
    leaf_bytes,
    leaf_hash,
    root,
    sign_checkpoint,
)
from charter.audit.log import stored_checkpoints, stored_log
from charter.audit.verify import verify_log, verify_log_from
from charter.storage import AuditLeaf, open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=10_000)
    args = parser.parse_args()
    n, trusted = args.records, args.records - args.tail
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        store.migrate()
        now = dt.datetime.now(dt.UTC)
        print(f"appending {n:,} records (not timed)...")
        for start in range(0, n, 50_000):
            batch = [
                leaf_bytes(
                    AuditRecord(
                        index=i,
                        time="2026-01-01T00:00:00.000000Z",
                        kind=RecordKind.VERDICT,
                        principal="support-bot",
                        reason="x" * 600,
                    )
                )
                for i in range(start, min(n, start + 50_000))
            ]
            store.append_audit([AuditLeaf(leaf_hash(b), b.decode(), now) for b in batch])
        key = SigningKey.generate()
        hashes = store.audit_leaf_hashes(0, n)
        for size in (trusted, n):
            cp = sign_checkpoint(key, log_id="bench", tree_size=size, root_hash=root(hashes[:size]))
            store.save_checkpoint(size, cp.root_hash, json.dumps(cp.to_dict()).encode(), now)

        started = time.perf_counter()
        full = verify_log(stored_log(store), stored_checkpoints(store), key.public_key)
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        incremental = verify_log_from(
            store.audit_leaf_hashes(0, trusted),
            stored_log(store, trusted),
            stored_checkpoints(store),
            key.public_key,
        )
        incremental_s = time.perf_counter() - started
        assert full.ok and incremental.ok, (full.summary(), incremental.summary())
        store.close()
    print(f"verify, {n:,} records from the store:              {full_s:6.2f} s")
    print(f"verify --from-checkpoint {trusted:,} ({args.tail:,} newer): {incremental_s:6.2f} s")


if __name__ == "__main__":
    main()
