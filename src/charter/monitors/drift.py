"""Drift: each monitor control's statistic over a sliding window, compared with a baseline window.

Observations land in time buckets (``BUCKETS_PER_WINDOW`` per window) holding counts, sums and
histograms, never raw samples, so memory is bounded by the windows and not by the traffic. When a
series opens a new bucket, the last full window is compared with the baseline window right before
it; a value at or above the threshold raises one ``DriftAlert``, and the series re-arms once the
value falls below ``REARM_RATIO`` of the threshold, so a lasting shift alerts once, not per bucket.

A value over the threshold alerts only if chance is an unlikely explanation too: rates need a
two-proportion |z| of at least ``SIGNIFICANCE_Z``, means a Welch |t| as large, the KS statistic
must exceed its 0.001 critical value, and PSI must be ``PSI_NOISE_FACTOR`` times what two samples
of those sizes from one distribution give on average. Small windows therefore wait for evidence
instead of alerting on noise.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from charter.audit.log import Draft
from charter.audit.records import RecordKind, Scalar
from charter.document.model import Charter, Mode, MonitorControl, duration_seconds
from charter.monitors.observation import Observation
from charter.monitors.stats import (
    SCORE_BINS,
    categorical_psi,
    ks_critical,
    ks_statistic,
    score_bin,
    score_psi,
    two_proportion_z,
    welch_t,
)
from charter.policy.verdict import Action

log = logging.getLogger(__name__)

BUCKETS_PER_WINDOW = 12
MIN_SAMPLES = 20  # per window: fewer observations than this say nothing either way
SIGNIFICANCE_Z = 3.0
PSI_NOISE_FACTOR = 3.0
REARM_RATIO = 0.5
MAX_SERIES = 1000  # per monitor; series are principals of the charter, so this is a safety net

RATE_STATISTICS = frozenset({"verdict_rate", "refusal_rate", "escalation_rate"})
MEAN_STATISTICS = frozenset({"output_length", "cost_per_request"})
SCORE_STATISTICS = frozenset({"score_psi", "score_ks"})
NEEDS_CONTROL = frozenset({"verdict_rate", "score_psi", "score_ks", "topic_mix"})


@dataclass
class _Bucket:
    start: float
    n: int = 0
    hits: int = 0
    total: float = 0.0
    squares: float = 0.0
    bins: npt.NDArray[np.int64] | None = None
    topics: Counter[str] | None = None


@dataclass
class _Series:
    buckets: deque[_Bucket] = field(default_factory=deque)
    firing: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """A monitor's statistic for one series at one time; ``value`` is None without enough data."""

    monitor: str
    statistic: str
    series: str
    value: float | None
    threshold: float
    current: float | None
    baseline: float | None
    current_n: int
    baseline_n: int
    at: float
    significant: bool = False

    @property
    def over(self) -> bool:
        """At or over the threshold, and more than chance would explain."""
        return self.value is not None and self.value >= self.threshold and self.significant

    @property
    def state(self) -> str:
        """ok, drift, or waiting (not yet enough data in one of the windows)."""
        if self.value is None:
            return "waiting"
        return "drift" if self.over else "ok"


@dataclass(frozen=True, slots=True)
class DriftAlert:
    """A threshold crossing: what was watched, for whom, and the numbers behind it."""

    reading: Reading
    decision_ids: tuple[str, ...]
    watched: str | None
    window: str
    baseline_window: str
    shadow: bool = False
    charter_version: str | None = None

    @property
    def monitor(self) -> str:
        return self.reading.monitor

    def summary(self) -> str:
        """One line a person reads in a chat channel or the audit search."""
        r = self.reading
        what = f"{r.statistic} of {self.watched}" if self.watched else r.statistic
        numbers = ""
        if r.current is not None and r.baseline is not None:
            numbers = f": {_fmt(r.current)} now vs {_fmt(r.baseline)} before"
        return (
            f"drift on {r.monitor} for {r.series}: {what} moved by {_fmt(r.value or 0.0)} "
            f"(threshold {_fmt(r.threshold)}){numbers}; {r.current_n} requests in the last "
            f"{self.window} against {r.baseline_n} in the {self.baseline_window} before"
        )

    def details(self) -> dict[str, Scalar]:
        r = self.reading
        return {
            "statistic": r.statistic,
            "series": r.series,
            "value": r.value,
            "threshold": r.threshold,
            "current": r.current,
            "baseline": r.baseline,
            "current_n": r.current_n,
            "baseline_n": r.baseline_n,
            "window": self.window,
            "baseline_window": self.baseline_window,
            "watched_control": self.watched,
            "shadow": self.shadow,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the webhook (format ``charter``)."""
        return {
            "type": "charter.drift_alert",
            "monitor": self.monitor,
            "decisions": list(self.decision_ids),
            "at": self.reading.at,
            "charter_version": self.charter_version,
            "summary": self.summary(),
            **self.details(),
        }

    def draft(self) -> Draft:
        """The audit record of this alert."""
        controls = (self.monitor, self.watched) if self.watched else (self.monitor,)
        series = self.reading.series
        return Draft(
            kind=RecordKind.DRIFT_ALERT,
            principal=None if series == "*" else series,
            charter_version=self.charter_version,
            control_ids=controls,
            decision_ids=self.decision_ids,
            reason=self.summary(),
            details=self.details(),
        )


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class Monitor:
    """One ``monitor`` control, compiled: what to sample from a request and how to compare."""

    def __init__(self, control: MonitorControl) -> None:
        settings = control.settings
        self.control = control
        self.id = control.id
        self.statistic = settings.statistic
        self.watched = settings.control
        self.threshold = settings.threshold
        self.window_s = float(duration_seconds(settings.window))
        self.baseline_s = float(duration_seconds(settings.baseline_window))
        self.width = self.window_s / BUCKETS_PER_WINDOW
        self.every_principal = "*" in settings.principals
        self.principals = frozenset(p for p in settings.principals if p != "*")
        self.series: dict[str, _Series] = {}

    # --- what one request contributes ------------------------------------------------------------

    def keys(self, obs: Observation) -> list[str]:
        """The series this request counts in: its caller (for ``*``) and each listed principal
        it belongs to (a team listed covers its apps and users)."""
        out = [p for p in obs.principals if p in self.principals]
        if self.every_principal and obs.principals and obs.principals[0] not in out:
            out.insert(0, obs.principals[0])
        return out

    def sample(self, obs: Observation) -> float | str | None:
        """This request's contribution, or None when the statistic does not apply to it."""
        stat = self.statistic
        if stat == "refusal_rate":
            return 1.0 if obs.refused else 0.0
        if stat == "escalation_rate":
            return 1.0 if obs.escalated else 0.0
        if stat == "output_length":
            return float(obs.output_tokens) if obs.answered else None
        if stat == "cost_per_request":
            return float(obs.cost_micro_usd)
        ruling = obs.ruling(self.watched) if self.watched else None
        if ruling is None:
            return None
        if stat == "verdict_rate":
            return 0.0 if ruling.action is Action.ALLOW else 1.0
        if stat == "topic_mix":
            return ruling.topic or ruling.action.value
        return ruling.score  # score_psi, score_ks

    def add(self, obs: Observation) -> list[Reading]:
        """Count ``obs``; returns the readings of series that just closed a bucket."""
        sample = self.sample(obs)
        if sample is None:
            return []
        out = []
        for key in self.keys(obs):
            series = self.series.get(key)
            if series is None:
                if len(self.series) >= MAX_SERIES:
                    continue
                series = self.series[key] = _Series()
            reading = self._add(series, key, obs.at, sample)
            if reading is not None:
                out.append(reading)
        return out

    def _add(self, series: _Series, key: str, at: float, sample: float | str) -> Reading | None:
        start = math.floor(at / self.width) * self.width
        buckets = series.buckets
        reading = None
        if not buckets or start > buckets[-1].start:
            if buckets:
                reading = self.read(key, start)
            buckets.append(_Bucket(start))
            horizon = start - self.window_s - self.baseline_s
            while buckets and buckets[0].start < horizon:
                buckets.popleft()
            bucket = buckets[-1]
        else:
            found = next((b for b in reversed(buckets) if b.start == start), None)
            if found is None:
                return None  # older than anything kept: too late to count
            bucket = found
        bucket.n += 1
        if isinstance(sample, str):
            if bucket.topics is None:
                bucket.topics = Counter()
            bucket.topics[sample] += 1
        elif self.statistic in SCORE_STATISTICS:
            if bucket.bins is None:
                bucket.bins = np.zeros(SCORE_BINS, dtype=np.int64)
            bucket.bins[score_bin(sample)] += 1
            bucket.total += sample
        else:
            bucket.total += sample
            bucket.squares += sample * sample
            bucket.hits += int(sample > 0)
        return reading

    # --- comparing windows ------------------------------------------------------------------------

    def read(self, key: str, end: float) -> Reading:
        """The statistic of series ``key`` for the window ending at ``end`` against its baseline."""
        series = self.series.get(key) or _Series()
        split = end - self.window_s
        current = [b for b in series.buckets if split <= b.start < end]
        baseline = [b for b in series.buckets if split - self.baseline_s <= b.start < split]
        n_cur = sum(b.n for b in current)
        n_base = sum(b.n for b in baseline)
        value: float | None = None
        significant = False
        cur_summary = _mean(current) if current else None
        base_summary = _mean(baseline) if baseline else None
        if self.statistic in RATE_STATISTICS:
            cur_summary = _rate(current) if current else None
            base_summary = _rate(baseline) if baseline else None
        if n_cur >= MIN_SAMPLES and n_base >= MIN_SAMPLES:
            value, significant = self._compare(current, baseline, n_cur, n_base)
        if self.statistic == "topic_mix":
            cur_summary = base_summary = None
        return Reading(
            self.id,
            self.statistic,
            key,
            value,
            self.threshold,
            cur_summary,
            base_summary,
            n_cur,
            n_base,
            end,
            significant,
        )

    def _compare(
        self, current: list[_Bucket], baseline: list[_Bucket], n: int, m: int
    ) -> tuple[float, bool]:
        """The statistic's value, and whether it is more than chance would explain."""
        stat = self.statistic
        if stat in RATE_STATISTICS:
            hits, base_hits = sum(b.hits for b in current), sum(b.hits for b in baseline)
            value = abs(hits / n - base_hits / m)
            return value, two_proportion_z(hits, n, base_hits, m) >= SIGNIFICANCE_Z
        if stat in MEAN_STATISTICS:
            cur, cur_var = _moments(current, n)
            base, base_var = _moments(baseline, m)
            # Relative change; a baseline below one token (or one micro-dollar) counts as one.
            value = abs(cur - base) / max(base, 1.0)
            return value, welch_t(cur, cur_var, n, base, base_var, m) >= SIGNIFICANCE_Z
        noise = 1 / n + 1 / m
        if stat == "topic_mix":
            expected, actual = _topics(baseline), _topics(current)
            value = categorical_psi(expected, actual)
            groups = len(set(expected) | set(actual))
            return value, value > PSI_NOISE_FACTOR * max(groups - 1, 1) * noise
        expected_bins, actual_bins = _bins(baseline), _bins(current)
        if stat == "score_psi":
            value, groups = score_psi(expected_bins, actual_bins)
            return value, value > PSI_NOISE_FACTOR * max(groups - 1, 1) * noise
        value = ks_statistic(expected_bins, actual_bins)
        return value, value > ks_critical(n, m)

    def readings(self, now: float) -> list[Reading]:
        """Every series' reading for the window ending at the end of ``now``'s bucket."""
        end = (math.floor(now / self.width) + 1) * self.width
        return [self.read(key, end) for key in sorted(self.series)]


def _rate(buckets: Iterable[_Bucket]) -> float:
    listed = list(buckets)
    n = sum(b.n for b in listed)
    return sum(b.hits for b in listed) / n if n else 0.0


def _mean(buckets: Iterable[_Bucket]) -> float:
    listed = list(buckets)
    n = sum(b.n for b in listed)
    return sum(b.total for b in listed) / n if n else 0.0


def _moments(buckets: Iterable[_Bucket], n: int) -> tuple[float, float]:
    """Mean and (population) variance of the samples in ``buckets``."""
    listed = list(buckets)
    mean = sum(b.total for b in listed) / n
    variance = max(0.0, sum(b.squares for b in listed) / n - mean * mean)
    return mean, variance


def _bins(buckets: Iterable[_Bucket]) -> npt.NDArray[np.int64]:
    total = np.zeros(SCORE_BINS, dtype=np.int64)
    for b in buckets:
        if b.bins is not None:
            total += b.bins
    return total


def _topics(buckets: Iterable[_Bucket]) -> Mapping[str, int]:
    total: Counter[str] = Counter()
    for b in buckets:
        if b.topics:
            total.update(b.topics)
    return total


AlertSink = Callable[[DriftAlert], None]


class DriftMonitor:
    """Every monitor control of a charter, fed one observation at a time.

    ``sinks`` are called with each alert (the audit trail, the webhook, metrics); a sink that
    raises is logged and never stops the others or the request path. Alerts of a monitor in
    ``shadow`` mode go to the sinks flagged ``shadow`` (the webhook sender skips them).
    """

    def __init__(
        self,
        charter: Charter,
        *,
        charter_version: str | None = None,
        sinks: Iterable[AlertSink] = (),
    ) -> None:
        self.charter_version = charter_version
        self.monitors = [
            Monitor(c)
            for c in charter.controls
            if isinstance(c, MonitorControl) and c.mode is not Mode.OFF
        ]
        self.sinks = list(sinks)
        self.alerts: deque[DriftAlert] = deque(maxlen=100)  # the latest, for status pages
        self._lock = threading.Lock()

    def add_sink(self, sink: AlertSink) -> None:
        self.sinks.append(sink)

    def add(self, obs: Observation) -> list[DriftAlert]:
        """Count one request; returns (and sends to the sinks) the alerts it raised."""
        if not self.monitors:
            return []
        fired = []
        with self._lock:
            for monitor in self.monitors:
                for reading in monitor.add(obs):
                    alert = self._judge(monitor, reading)
                    if alert is not None:
                        fired.append(alert)
                        self.alerts.append(alert)
        for alert in fired:
            for sink in self.sinks:
                try:
                    sink(alert)
                except Exception:  # an alert sink must never break the request path
                    log.exception("drift alert sink %r failed", sink)
        return fired

    def _judge(self, monitor: Monitor, reading: Reading) -> DriftAlert | None:
        series = monitor.series[reading.series]
        if reading.value is None:
            return None
        if reading.over and not series.firing:
            series.firing = True
            control = monitor.control
            return DriftAlert(
                reading,
                tuple(control.serves),
                monitor.watched,
                control.settings.window,
                control.settings.baseline_window,
                shadow=control.mode is Mode.SHADOW,
                charter_version=self.charter_version,
            )
        if series.firing and reading.value < monitor.threshold * REARM_RATIO:
            series.firing = False
        return None

    def readings(self, now: float) -> list[Reading]:
        """The current reading of every series of every monitor."""
        with self._lock:
            return [r for m in self.monitors for r in m.readings(now)]
