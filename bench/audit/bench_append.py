"""Audit append throughput and the latency group commit adds, on SQLite and PostgreSQL.

Many writers submit records at once, as the gateway's concurrent requests do: coroutines on one
event loop, each awaiting its record's commit before submitting the next (threads would measure
the GIL convoy of hundreds of OS threads instead). The writer thread commits everything queued
while the previous commit was in flight, durably. Reports records/s and the per-record wait
(submit -> committed) p50/p99, side by side for both backends in one run.

    python bench/audit/bench_append.py                 # both backends, 20,000 records, 64 writers
    python bench/audit/bench_append.py --records 100000 --writers 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from charter.audit.log import AuditLog, Draft, open_keys
from charter.audit.records import Content, RecordKind
from charter.policy.verdict import Action
from charter.storage import open_store


def draft(i: int, key: bytes) -> Draft:
    return Draft(
        kind=RecordKind.VERDICT,
        principal="support-bot",
        request_id=f"req_{i:012d}",
        charter_version="sha256:" + "ab" * 32,
        control_ids=("model-allowlist", "team-budgets", "input-injection"),
        decision_ids=("approved-models", "team-budgets", "no-jailbreaks"),
        action=Action.ALLOW,
        reason="answered",
        content=(Content.hashed("input", key, f"Where is my parcel for order {i}?"),),
        details={
            "model": "sim-small",
            "status": 200,
            "input_tokens": 23,
            "output_tokens": 41,
            "cost_micro_usd": 31,
        },
    )


def run(url: str, records: int, writers: int, state: Path) -> dict[str, float]:
    store = open_store(url)
    store.migrate()
    keys = open_keys(state)
    log = AuditLog(store, keys, checkpoint_every=10**9)
    waits: list[float] = []
    per_writer = records // writers

    async def writer(w: int) -> None:
        for j in range(per_writer):
            start = time.perf_counter()
            await log.append(draft(w * per_writer + j, keys.content))
            waits.append(time.perf_counter() - start)

    async def everyone() -> None:
        await asyncio.gather(*(writer(w) for w in range(writers)))

    began = time.perf_counter()
    asyncio.run(everyone())
    elapsed = time.perf_counter() - began
    log.close()
    assert store.audit_size() == per_writer * writers
    store.close()
    waits.sort()
    return {
        "records_per_s": len(waits) / elapsed,
        "p50_ms": statistics.median(waits) * 1000,
        "p99_ms": waits[int(len(waits) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            (
                "SQLite (WAL, durable commits)",
                run(f"sqlite:///{tmp}/bench.db", args.records, args.writers, Path(tmp) / "s1"),
            )
        )
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
            rows.append(
                (
                    "PostgreSQL (synchronous_commit on)",
                    run(url, args.records, args.writers, Path(tmp) / "s2"),
                )
            )
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"\n{args.records} records from {args.writers} concurrent writers\n")
    print("| backend | records/s | wait p50 | wait p99 |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['records_per_s']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |"
        )


if __name__ == "__main__":
    main()
