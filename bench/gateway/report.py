"""Turn wrk runs into the figures the README quotes: medians over rounds, and differences and
ratios taken inside each round (targets of one round ran minutes apart on the same machine)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pyspy import shares_markdown

GATEWAYS = ("nginx", "floor", "charter", "charter-commit", "litellm")
_METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_ms_per_request")


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per load: each target's medians, each gateway's added latency over the direct runs, and
    Charter's throughput over LiteLLM's, all paired by round."""
    by: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        by[run["load"]][run["target"]][run["round"]] = run
    out: dict[str, Any] = {}
    for load, targets in by.items():
        entry: dict[str, Any] = {"targets": {}, "added": {}, "charter_vs_litellm": None}
        for name, rounds in targets.items():
            rows = list(rounds.values())
            stats: dict[str, Any] = {m: _median(r[m] for r in rows) for m in _METRICS}
            stats["errors"] = sum(r["errors"] for r in rows)
            stats["requests"] = sum(r["requests"] for r in rows)
            stats["runs"] = len(rows)
            entry["targets"][name] = stats
        # A paced gateway that served well under what the upstream alone served at the same
        # offered rate was overloaded: its latency is then queueing, not what it adds.
        direct_rps = entry["targets"].get("direct", {}).get("rps")
        for name, stats in entry["targets"].items():
            paced = any(r.get("offered_rate") for r in targets[name].values())
            stats["overloaded"] = bool(
                paced and name != "direct" and direct_rps and stats["rps"] < 0.9 * direct_rps
            )
        direct = targets.get("direct", {})
        for gateway in GATEWAYS:
            if gateway not in targets:
                continue
            paired = [(targets[gateway][r], direct[r]) for r in targets[gateway] if r in direct]
            entry["added"][gateway] = {
                f"{p}_ms": _median(g[f"{p}_ms"] - d[f"{p}_ms"] for g, d in paired)
                for p in ("p50", "p95", "p99")
            }
        if "charter" in targets and "litellm" in targets:
            both = [r for r in targets["charter"] if r in targets["litellm"]]
            charter, litellm = targets["charter"], targets["litellm"]
            entry["charter_vs_litellm"] = {
                "throughput_ratio": _median(
                    charter[r]["rps"] / litellm[r]["rps"] for r in both if litellm[r]["rps"]
                ),
                "cpu_per_request_ratio": _median(
                    litellm[r]["cpu_ms_per_request"] / charter[r]["cpu_ms_per_request"]
                    for r in both
                    if charter[r]["cpu_ms_per_request"] and litellm[r]["cpu_ms_per_request"]
                ),
            }
        out[load] = entry
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The README's table (a benchmark) or its soak lines (a soak)."""
    if result["kind"] == "gateway-soak":
        return soak_markdown(result)
    if result["kind"] == "gateway-profile":
        load = result["load"]
        title = (
            f"Charter under {result['settings']['load']}, {result['settings']['connections']} "
            f"connections: {load['rps']:,.0f} req/s, {load['cpu_ms_per_request']} ms CPU/request"
        )
        return shares_markdown(title, list(result["shares_percent"].items()))
    settings, env = result["settings"], result["environment"]
    lines = [
        f"{settings['connections']} connections, {settings['prompt_bytes']} B prompt, "
        f"{settings['duration_s']:g} s per run, median of {settings['rounds']} round(s); "
        f"{env['cpus']} CPUs, pinning {env['pinning']}; LiteLLM {env['litellm']}; "
        f"commit {env['git_commit']}",
        "",
        "| load | target | req/s | p50 ms | p95 ms | p99 ms | added p50 | added p95 | added p99 "
        "| CPU ms/req | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ratios = []
    for load, entry in result["summary"].items():
        for name, stats in entry["targets"].items():
            # Closed-loop latency is queueing (connections / throughput): only paced runs
            # measure what a gateway adds to a request, so only they get the added columns.
            added = entry["added"].get(name, {}) if "paced" in load else {}
            shown = f"{name} (overloaded)" if stats.get("overloaded") else name
            lines.append(
                f"| {load} | {shown} | {_fmt(stats['rps'], 0)} | {_fmt(stats['p50_ms'])} "
                f"| {_fmt(stats['p95_ms'])} | {_fmt(stats['p99_ms'])} "
                f"| {_fmt(added.get('p50_ms')) if added else '-'} "
                f"| {_fmt(added.get('p95_ms')) if added else '-'} "
                f"| {_fmt(added.get('p99_ms')) if added else '-'} "
                f"| {_fmt(stats['cpu_ms_per_request'], 3)} | {stats['errors']} |"
            )
        vs = entry["charter_vs_litellm"]
        if vs:
            # Paced runs offer the same rate to both, so their throughput ratio says nothing.
            ratio = _fmt(vs["throughput_ratio"])
            served = "" if "paced" in load else f"Charter/LiteLLM throughput {ratio}x; "
            ratios.append(
                f"- {load}: {served}LiteLLM spends {_fmt(vs['cpu_per_request_ratio'])}x "
                "Charter's CPU per request"
            )
    if ratios:
        lines += ["", *ratios]
    return "\n".join(lines)


def soak_summary(samples: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """Start, end and max RSS, and the least-squares slope over the whole soak and its second
    half (the second half shows whether growth continues once caches and pools are full)."""
    mib = 1024 * 1024

    def slope(points: Sequence[tuple[float, int]]) -> float | None:
        if len(points) < 3:
            return None
        fit = statistics.linear_regression([t for t, _ in points], [r for _, r in points])
        return round(fit.slope * 60 / mib, 3)  # MiB per minute

    rss = [r for _, r in samples]
    half = [p for p in samples if p[0] >= samples[-1][0] / 2]
    return {
        "samples": len(samples),
        "start_mib": round(rss[0] / mib, 1),
        "end_mib": round(rss[-1] / mib, 1),
        "max_mib": round(max(rss) / mib, 1),
        "slope_mib_per_min": slope(samples),
        "second_half_slope_mib_per_min": slope(half),
    }


_PARTS = {
    "VmRSS": "RSS (total)",
    "RssAnon": "heap and stacks (RssAnon)",
    "RssFile": "mapped files (RssFile)",
    "RssShmem": "shared memory, e.g. SQLite's -shm (RssShmem)",
}


def soak_markdown(result: dict[str, Any]) -> str:
    load = result["load"]
    lines = [
        f"Soak: {result['settings']['seconds']:g} s of {result['settings']['load']} "
        f"against Charter ({load['requests']:,} requests, {load['rps']:,.0f} req/s, "
        f"{load['errors']} errors, p99 {load['p99_ms']:.1f} ms)",
        "",
        "| memory | start | end | max | slope (whole) | slope (second half) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for part, s in result["summary"].items():
        lines.append(
            f"| {_PARTS.get(part, part)} | {s['start_mib']} MiB | {s['end_mib']} MiB "
            f"| {s['max_mib']} MiB | {_fmt(s['slope_mib_per_min'], 3)} MiB/min "
            f"| {_fmt(s['second_half_slope_mib_per_min'], 3)} MiB/min |"
        )
    lines += ["", f"SQLite files at the end: {result['sqlite_bytes'] / 1024 / 1024:.1f} MiB"]
    return "\n".join(lines)
