"""Where Charter's gateway spends its CPU under load: py-spy stacks, grouped by part of the path.

py-spy samples only threads holding the GIL (``--gil``), so the shares are of CPU actually spent
in Python, not of time spent waiting; they are robust to a noisy machine in a way wall-clock
figures are not. A stack counts towards the first "anywhere" group any of its frames belongs to
(so the audit record built inside a request counts towards the audit trail, not the request's
other parts), else towards the group of its innermost recognised frame.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from servers import BenchError

PY_SPY_INSTALL = "pip install py-spy  (into any virtual environment; not a Charter dependency)"

ANYWHERE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("spend ledger: hand-off to the writer thread", ("SpendWriter.add",)),
    ("spend ledger: writer thread (SQLite)", ("SpendWriter._run",)),
    ("audit trail: writer thread (group commit)", ("AuditLog._run",)),
    ("audit trail: record built and encoded", ("Gateway._draft", "AuditLog.append")),
    ("metrics and drift (after the answer)", ("Observer.observe",)),
    ("upstream client: aiohttp", ("aiohttp/", "aiohappyeyeballs/")),
    (
        "policy engine: route, admission, settle",
        ("charter/policy/", "charter/counters/", "charter/budgets/", "charter/limits/"),
    ),
    ("standards: composed and checked", ("charter/standards/",)),
)
INNERMOST: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("json encode/decode", ("json/",)),
    ("provider wrapper (retries, deadlines, limits)", ("charter/providers/base.py",)),
    ("request/response models", ("charter/providers/",)),
    ("gateway adapter (keys, service, app, guards)", ("charter/gateway/", "charter/guards/")),
    ("starlette", ("starlette/",)),
    ("uvicorn + httptools (server side)", ("uvicorn/", "httptools/", "h11/")),
    ("asyncio event loop, sockets", ("asyncio/", "selectors.py", "anyio/", "socket.py", "uvloop")),
)


def require_py_spy(path: str | None) -> str:
    found = path or shutil.which("py-spy")
    if found is None or not Path(found).exists():
        raise BenchError(f"py-spy is not installed; install it with: {PY_SPY_INSTALL}")
    return found


def _group(frames: list[str]) -> str:
    for name, marks in ANYWHERE:
        if any(mark in frame for frame in frames for mark in marks):
            return name
    for frame in reversed(frames):
        for name, marks in INNERMOST:
            if any(mark in frame for mark in marks):
                return name
    return "other"


def shares(raw_lines: Iterable[str]) -> list[tuple[str, float]]:
    """Per group, its share of the samples in py-spy's ``--format raw`` output, largest first."""
    counts: Counter[str] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counts[_group(stack.split(";"))] += int(count)
    total = sum(counts.values())
    if not total:
        raise BenchError("py-spy recorded no samples (is the gateway busy, and may we ptrace it?)")
    return [(name, round(100 * n / total, 1)) for name, n in counts.most_common()]


def shares_markdown(title: str, rows: list[tuple[str, float]]) -> str:
    lines = [title, "", "| part of the request path | share of CPU samples |", "|---|--:|"]
    lines += [f"| {name} | {share:.1f}% |" for name, share in rows]
    return "\n".join(lines)
