"""What a server process costs, read from /proc: CPU seconds (with its children) and RSS."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn or gunicorn workers, if any)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants so far."""
    total = 0
    for each in descendants(pid):
        try:
            fields = _stat_fields(each)
        except OSError:
            continue  # it ended between the listing and the read
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def rss_parts(pid: int) -> dict[str, int]:
    """Resident memory of ``pid`` and its descendants in bytes: the total (VmRSS) and its parts,
    the heap (RssAnon) apart from mapped files such as SQLite's (RssFile, RssShmem)."""
    total = dict.fromkeys(RSS_FIELDS, 0)
    for each in descendants(pid):
        try:
            with open(f"/proc/{each}/status", encoding="ascii") as fh:
                for line in fh:
                    name, _, value = line.partition(":")
                    if name in total:
                        total[name] += int(value.split()[0]) * 1024
        except OSError:
            continue
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` and its descendants."""
    return rss_parts(pid)["VmRSS"]


def load_average() -> float:
    """The 1-minute load average: how busy the shared machine was."""
    return os.getloadavg()[0]
