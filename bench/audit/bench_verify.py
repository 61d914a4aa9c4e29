"""Benchmark: verifying a large audit log, and the per-record cost of encoding and hashing.

Run:  .venv/bin/python bench/audit/bench_verify.py [--records 1000000] [--runs 3]

Prints the median over ``--runs`` of: canonical JSON + leaf hash per record (fast encoder and the
reference ``rfc8785`` one), incremental appends, the bulk root of N leaf hashes, and end-to-end
``verify_log`` of N records from stored leaf bytes and from record objects. Target: N = 1,000,000
verified in <= 10 s.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import rfc8785

from charter.audit import (
    AuditRecord,
    Content,
    MerkleTree,
    RecordKind,
    SigningKey,
    leaf_bytes,
    leaf_hashes,
    roots_at,
    sign_checkpoint,
    verify_log,
)
from charter.policy.verdict import Action

KEY = b"bench-content-key-0123456789abcd"
PER_RECORD_SAMPLE = 50_000


def make_record(i: int) -> AuditRecord:
    """A realistic verdict record: ids, a reason, two content hashes, a few details."""
    return AuditRecord(
        index=i,
        time=f"2025-03-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000000Z",
        kind=RecordKind.VERDICT,
        principal=f"team:support/app:helpdesk/user:{i % 977}",
        request_id=f"req_{i:012d}",
        charter_version="sha256:" + "ab" * 32,
        control_ids=("pii-output", "budget-team-support"),
        decision_ids=("D-12", "D-7"),
        action=(Action.ALLOW, Action.REDACT, Action.BLOCK)[i % 3],
        reason="email address in the model's answer",
        content=(
            Content.hashed("input", KEY, f"prompt {i}"),
            Content.hashed("output", KEY, f"answer {i}"),
        ),
        details={"stage": "output", "enforced": True, "tokens": 100 + i % 900},
    )


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``runs`` runs (GC paused, as a steady server would be)."""
    times = []
    result = None
    for _ in range(runs):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        gc.enable()
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n, runs = args.records, args.runs

    print(f"building {n:,} synthetic records (not timed)...", flush=True)
    records = [make_record(i) for i in range(n)]
    leaves = [leaf_bytes(r) for r in records]
    hashes = leaf_hashes(leaves)
    mean_len = sum(len(x) for x in leaves[:1000]) / min(n, 1000)
    print(f"mean leaf size: {mean_len:.0f} bytes")

    sample = records[:PER_RECORD_SAMPLE]
    t, _ = timed(lambda: [leaf_bytes(r) for r in sample], runs)
    print(f"canonical JSON per record (fast path):       {t / len(sample) * 1e6:6.2f} us")
    t, _ = timed(lambda: [rfc8785.dumps(r.to_dict()) for r in sample], runs)
    print(f"canonical JSON per record (rfc8785 package): {t / len(sample) * 1e6:6.2f} us")
    t, _ = timed(lambda: leaf_hashes([leaf_bytes(r) for r in sample]), runs)
    per = t / len(sample)
    print(
        f"canonical JSON + leaf hash per record:       {per * 1e6:6.2f} us "
        f"({1 / per:,.0f} records/s)"
    )

    def append_all() -> bytes:
        tree = MerkleTree()
        for h in hashes:
            tree.append(h)
        return tree.root()

    t, tree_root = timed(append_all, runs)
    print(f"MerkleTree.append, {n:,} leaves:            {t:6.2f} s ({n / t:,.0f} appends/s)")

    t, roots = timed(lambda: roots_at(hashes, [n]), runs)
    assert roots[n] == tree_root
    print(f"bulk root of {n:,} leaf hashes:              {t:6.2f} s")

    signer = SigningKey.generate()
    sizes = sorted({n // 4, n // 2, n})
    checkpoints = [
        sign_checkpoint(signer, log_id="bench", tree_size=s, root_hash=r)
        for s, r in roots_at(hashes, sizes).items()
    ]
    t, report = timed(lambda: verify_log(leaves, checkpoints, signer.public_key), runs)
    assert report.ok, report.summary()
    print(f"verify_log, {n:,} records from leaf bytes:  {t:6.2f} s  (target <= 10 s)")
    t, report = timed(lambda: verify_log(records, checkpoints, signer.public_key), runs)
    assert report.ok, report.summary()
    print(f"verify_log, {n:,} record objects:          {t:6.2f} s  (target <= 10 s)")


if __name__ == "__main__":
    main()
