"""Drift monitors on replayed traffic: a shifting mix raises an alert, a stable one does not."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from charter.audit.records import RecordKind
from charter.document.model import Charter
from charter.errors import ConfigurationError
from charter.monitors.drift import DriftAlert, DriftMonitor
from charter.monitors.observation import Observation, Ruling
from charter.policy.engine import Engine
from charter.policy.registry import unimplemented
from charter.policy.verdict import Action
from tests.monitors.charters import charter_with

T0 = 1_900_000_000.0  # a fixed start, so runs are reproducible
STEP_S = 10.0  # one request every 10 s: 360 an hour
HOURS = 12
SHIFT_AT_H = 9


def monitor(mid: str, statistic: str, threshold: float, **settings: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "settings": {
            "statistic": statistic,
            "threshold": threshold,
            "window": "1h",
            "baseline_window": "6h",
            **settings,
        },
    }


MONITORS = [
    monitor("refusals", "refusal_rate", 0.08),
    monitor("injection-blocks", "verdict_rate", 0.08, control="input-injection"),
    monitor("escalations", "escalation_rate", 0.05),
    monitor("answer-length", "output_length", 0.3),
    monitor("spend", "cost_per_request", 0.3),
    monitor("injection-psi", "score_psi", 0.25, control="input-injection"),
    monitor("injection-ks", "score_ks", 0.15, control="input-injection"),
    monitor("pii-topics", "topic_mix", 0.2, control="pii-redaction"),
]


def request(
    rnd: random.Random,
    t: float,
    index: int,
    *,
    block_p: float = 0.04,
    escalate_p: float = 0.01,
    score: Callable[[random.Random], float] = lambda r: r.betavariate(2, 9),
    length: float = 120,
    topics: tuple[str, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER"),
    principal: tuple[str, ...] = ("support-bot", "support"),
) -> Observation:
    blocked = rnd.random() < block_p
    out = 0 if blocked else max(1, int(rnd.gauss(length, length / 5)))
    rulings = (
        Ruling("input-injection", Action.BLOCK if blocked else Action.ALLOW, True, score(rnd)),
        Ruling("pii-redaction", Action.REDACT, True, 1.0, rnd.choice(topics)),
    )
    if rnd.random() < escalate_p:
        rulings += (Ruling("secrets-guard", Action.ESCALATE, True, 0.6),)
    return Observation(
        T0 + index * STEP_S,
        f"req_{index}",
        principal,
        "sim-small",
        200,
        input_tokens=40,
        output_tokens=out,
        cost_micro_usd=6 + out,
        rulings=rulings,
    )


def stream(seed: int, shifted: dict[str, Any] | None = None) -> Iterator[Observation]:
    """Twelve hours of traffic; with ``shifted``, the last three hours change their mix."""
    rnd = random.Random(seed)
    for index in range(int(HOURS * 3600 / STEP_S)):
        late = index * STEP_S >= SHIFT_AT_H * 3600
        yield request(rnd, T0, index, **(shifted if shifted and late else {}))


def replay(charter: Charter, observations: Iterator[Observation]) -> list[DriftAlert]:
    drift = DriftMonitor(charter)
    alerts: list[DriftAlert] = []
    for obs in observations:
        alerts += drift.add(obs)
    return alerts


@pytest.fixture(scope="module")
def charter() -> Charter:
    return charter_with(MONITORS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stable_stream_raises_no_alert(charter: Charter, seed: int) -> None:
    assert replay(charter, stream(seed)) == []


SHIFTS = {
    "refusals": {"block_p": 0.2},
    "injection-blocks": {"block_p": 0.2},
    "escalations": {"escalate_p": 0.1},
    "answer-length": {"length": 220},
    "spend": {"length": 220},
    "injection-psi": {"score": lambda r: r.betavariate(4, 6)},
    "injection-ks": {"score": lambda r: r.betavariate(4, 6)},
    "pii-topics": {"topics": ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")},
}


@pytest.mark.parametrize("watched", sorted(SHIFTS))
def test_a_shift_in_the_mix_raises_the_alert_of_its_monitor_once(watched: str) -> None:
    alone = charter_with([m for m in MONITORS if m["id"] == watched])
    alerts = replay(alone, stream(1, SHIFTS[watched]))
    fired = [a for a in alerts if a.monitor == watched]
    assert len(fired) == 1, [a.summary() for a in alerts]
    alert = fired[0]
    # It fired after the shift began and within the first window after it.
    assert T0 + SHIFT_AT_H * 3600 < alert.reading.at <= T0 + (SHIFT_AT_H + 1) * 3600
    assert alert.reading.value is not None and alert.reading.value >= alert.reading.threshold
    assert alert.reading.series == "support-bot"
    assert alert.decision_ids == ("no-jailbreaks",)


def test_the_alert_names_the_numbers_and_becomes_an_audit_draft(charter: Charter) -> None:
    (alert,) = [
        a for a in replay(charter, stream(1, SHIFTS["refusals"])) if a.monitor == "refusals"
    ]
    reading = alert.reading
    assert reading.current is not None and reading.baseline is not None
    assert reading.current > reading.baseline + 0.08
    assert "refusal_rate" in alert.summary() and "support-bot" in alert.summary()
    draft = alert.draft()
    assert draft.kind is RecordKind.DRIFT_ALERT
    assert draft.control_ids == ("refusals",) and draft.decision_ids == ("no-jailbreaks",)
    assert draft.details["statistic"] == "refusal_rate" and draft.details["shadow"] is False
    body = alert.to_dict()
    assert body["type"] == "charter.drift_alert" and body["monitor"] == "refusals"


def test_a_listed_team_aggregates_its_members_and_others_are_not_counted() -> None:
    charter = charter_with([monitor("team-refusals", "refusal_rate", 0.08, principals=["support"])])
    rnd = random.Random(5)
    drift = DriftMonitor(charter)
    alerts = []
    for index in range(int(HOURS * 3600 / STEP_S)):
        late = index * STEP_S >= SHIFT_AT_H * 3600
        who = ("ravi", "support") if index % 2 else ("support-bot", "support")
        alerts += drift.add(request(rnd, T0, index, block_p=0.2 if late else 0.04, principal=who))
        # Marketing's refusals shift all day long, and nobody watches them.
        drift.add(request(rnd, T0, index, block_p=0.5, principal=("marketing-writer", "marketing")))
    assert [(a.monitor, a.reading.series) for a in alerts] == [("team-refusals", "support")]
    assert {r.series for r in drift.readings(T0 + HOURS * 3600)} == {"support"}


def test_small_windows_wait_for_evidence_instead_of_alerting() -> None:
    charter = charter_with([monitor("refusals", "refusal_rate", 0.05)])
    drift = DriftMonitor(charter)
    rnd = random.Random(1)
    # Ten requests an hour: one refusal more or less would otherwise cross any threshold.
    alerts = []
    for index in range(120):
        obs = request(rnd, T0, 0, block_p=0.5 if index > 100 else 0.05)
        alerts += drift.add(
            Observation(
                T0 + index * 360.0,
                obs.request_id,
                obs.principals,
                obs.model,
                obs.status,
                rulings=obs.rulings,
            )
        )
    assert alerts == []
    (reading,) = drift.readings(T0 + 120 * 360.0)
    assert reading.state == "waiting" and reading.current_n < 20


def test_an_alert_rearms_once_the_statistic_returns_below_the_threshold() -> None:
    charter = charter_with([monitor("refusals", "refusal_rate", 0.08, baseline_window="2h")])
    rnd = random.Random(11)
    drift = DriftMonitor(charter)
    alerts: list[DriftAlert] = []
    # Calm, a burst of refusals, calm again long enough for the baseline to forget, then again.
    phases = [(4, 0.04), (2, 0.3), (5, 0.04), (2, 0.3)]
    index = 0
    for hours, p in phases:
        for _ in range(int(hours * 3600 / STEP_S)):
            alerts += drift.add(request(rnd, T0, index, block_p=p))
            index += 1
    onsets = [T0 + 4 * 3600, T0 + 11 * 3600]
    # One alert at each burst (the return to calm may alert too: a drop is a change as well),
    # never one per bucket while a burst lasts.
    for onset in onsets:
        near = [a for a in alerts if onset < a.reading.at <= onset + 3600]
        assert len(near) == 1, [a.summary() for a in alerts]
        assert near[0].reading.current > near[0].reading.baseline  # type: ignore[operator]
    assert len(alerts) <= 4


def test_a_shadow_monitor_flags_its_alerts_as_shadow() -> None:
    shadow = {**monitor("refusals", "refusal_rate", 0.08), "mode": "shadow"}
    (alert,) = replay(charter_with([shadow]), stream(1, SHIFTS["refusals"]))
    assert alert.shadow and alert.draft().details["shadow"] is True


MINIMAL = """
format: 1
organization: Test
decisions:
  - {id: budgets, statement: Spend is capped., owner: cfo, risk: low, review_by: 2099-01-01,
     enforced_by: [budget, refusals]}
controls:
  - {id: budget, kind: budget, serves: [budgets],
     settings: {limits: [{principal: team, usd: 5, period: day}]}}
  - {id: refusals, kind: monitor, serves: [budgets],
     settings: {statistic: verdict_rate, control: budget, threshold: 0.1}}
principals: [{id: team, kind: team}]
"""


def test_monitors_are_a_registered_kind_the_engine_accepts() -> None:
    from charter.document.loader import load_charter_text

    loaded = load_charter_text(MINIMAL)
    assert loaded.errors == [], loaded.findings  # `charter check` accepts it
    charter = loaded.require()
    Engine(charter)  # would raise NotImplementedSetting for an unregistered kind
    assert unimplemented(charter.control("refusals")) == []


def test_a_statistic_about_one_control_must_name_it() -> None:
    charter = charter_with([monitor("blocks", "verdict_rate", 0.1, control="input-injection")])
    control = charter.control("blocks")
    settings = control.settings.model_copy(update={"control": None})
    gap = unimplemented(control.model_copy(update={"settings": settings}))
    assert gap and gap[0][0] == ("settings", "control") and "control" in gap[0][1]


def test_scores_of_a_control_that_gives_none_are_refused_at_start() -> None:
    from charter.document.loader import load_charter_text

    text = MINIMAL.replace("statistic: verdict_rate", "statistic: score_psi")
    with pytest.raises(ConfigurationError, match="gives no scores"):
        Engine(load_charter_text(text).require())
