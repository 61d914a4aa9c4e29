"""The policy engine: routes, budgets and rate limits, shadow mode, on_error, atomic admission."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

import pytest

from charter.counters import AdmitResult, Claim, MemoryCounters
from charter.document.loader import load_charter_text
from charter.document.model import Charter
from charter.errors import NotImplementedSetting, StorageUnavailable
from charter.policy.context import RequestContext
from charter.policy.engine import Engine, evaluate
from charter.policy.runtime import Runtime
from charter.policy.verdict import Action, Stage

CHARTER = """\
format: 1
organization: Acme
decisions:
  - {id: models, statement: s, owner: o, risk: low, review_by: 2030-01-01,
     enforced_by: [allowlist]}
  - {id: spend, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [budget]}
  - {id: rates, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [rates]}
controls:
  - id: allowlist
    kind: route
    serves: [models]
    settings:
      rules:
        - {principals: [team], models: [small]}
  - id: budget
    kind: budget
    serves: [spend]
    settings:
      limits:
        - {principal: team, usd: 1.0, period: month}
  - id: rates
    kind: rate_limit
    serves: [rates]
    settings:
      limits:
        - {principal: app, requests_per_minute: 5}
principals:
  - {id: team, kind: team}
  - {id: app, kind: app, member_of: team}
  - {id: other, kind: team}
providers:
  - id: sim
    kind: simulated
    models:
      - {name: small, price: {input_per_mtok: 1, output_per_mtok: 1}}
      - {name: big, price: {input_per_mtok: 1, output_per_mtok: 1}}
"""


def charter(text: str = CHARTER) -> Charter:
    return load_charter_text(text).require()


def ctx(
    engine: Engine, principal: str = "app", model: str = "small", **kw: object
) -> RequestContext:
    base = RequestContext(
        stage=Stage.REQUEST,
        request_id=str(kw.pop("rid", "r1")),
        principals=engine.principals_of(principal),
        model=model,
        max_cost_micro_usd=1000,
        max_tokens=100,
        now=float(kw.pop("now", 1_700_000_000.0)),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_route_allows_listed_model_through_team_membership() -> None:
    engine = Engine(charter())
    evaluation = engine.evaluate(ctx(engine))
    assert evaluation.action is Action.ALLOW
    assert evaluation.verdicts[0].decision_ids == ("models",)


def test_route_blocks_unlisted_model_and_names_the_decision() -> None:
    engine = Engine(charter())
    evaluation = engine.evaluate(ctx(engine, model="big"))
    assert evaluation.action is Action.BLOCK
    deciding = evaluation.deciding
    assert deciding is not None and deciding.control_id == "allowlist"
    assert "allowed: small" in deciding.reason


def test_principal_without_rule_is_denied_everything() -> None:
    engine = Engine(charter())
    assert engine.evaluate(ctx(engine, principal="other")).action is Action.BLOCK


def test_shadow_records_but_never_blocks() -> None:
    text = CHARTER.replace("    kind: route\n", "    kind: route\n    mode: shadow\n")
    engine = Engine(charter(text))
    evaluation = engine.evaluate(ctx(engine, model="big"))
    assert evaluation.action is Action.ALLOW
    (verdict,) = evaluation.verdicts
    assert verdict.action is Action.BLOCK and verdict.enforced is False


def test_off_controls_do_not_run() -> None:
    text = CHARTER.replace("    kind: route\n", "    kind: route\n    mode: off\n")
    engine = Engine(charter(text))
    assert engine.evaluate(ctx(engine, model="big")).verdicts == ()


def test_one_off_evaluate() -> None:
    assert (
        evaluate(
            RequestContext(Stage.REQUEST, principals=("team",), model="small"), charter()
        ).action
        is Action.ALLOW
    )


def test_unimplemented_kind_refuses_to_compile() -> None:
    text = CHARTER.replace(
        "principals:\n",
        "  - {id: m, kind: guard, serves: [rates],\n"
        "     settings: {scanner: length, max_chars: 9, stages: [input]}}\nprincipals:\n",
    ).replace("enforced_by: [rates]", "enforced_by: [rates, m]")
    loaded = load_charter_text(text)
    assert loaded.charter is not None
    with pytest.raises(NotImplementedSetting, match="stages"):
        Engine(loaded.charter)


def test_budget_blocks_when_worst_case_does_not_fit() -> None:
    engine = Engine(charter())

    async def run() -> None:
        ok = await engine.admit(ctx(engine, max_cost_micro_usd=900_000, rid="a"))
        assert ok.admitted and ok.reservation is not None
        over = await engine.admit(ctx(engine, max_cost_micro_usd=200_000, rid="b"))
        assert not over.admitted
        deciding = over.evaluation.deciding
        assert deciding is not None and deciding.control_id == "budget"
        assert deciding.decision_ids == ("spend",)
        assert "team monthly budget ($1.00)" in deciding.reason
        # settling at the real (smaller) cost frees room for the next request
        await engine.settle(ok.reservation, cost_micro_usd=100_000, tokens=10, now=1_700_000_001)
        again = await engine.admit(ctx(engine, max_cost_micro_usd=200_000, rid="c"))
        assert again.admitted

    asyncio.run(run())


def test_200_concurrent_requests_never_overspend() -> None:
    """Pins the anchor bug: check-then-increment budgets overspend by the concurrency."""
    engine = Engine(charter())
    spent = 950_000  # $0.95 of $1.00 already spent: room for 5 requests of at most $0.01

    async def seed_then_run() -> list[bool]:
        await engine.runtime.counters.seed(
            f"budget:budget:team:{dt.datetime.fromtimestamp(1_700_000_000, dt.UTC):%Y-%m}-01",
            spent,
            3600,
        )

        async def one(i: int) -> bool:
            admission = await engine.admit(
                ctx(engine, principal="team", max_cost_micro_usd=10_000, rid=f"r{i}")
            )
            await asyncio.sleep(0)
            if admission.reservation is not None:
                await engine.settle(
                    admission.reservation, cost_micro_usd=10_000, tokens=1, now=1_700_000_000
                )
            return admission.admitted

        return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(seed_then_run())
    assert sum(results) == 5


def test_rate_limit_sliding_window_is_exact() -> None:
    engine = Engine(charter())

    async def run() -> list[bool]:
        out = []
        for i in range(8):
            admission = await engine.admit(ctx(engine, rid=f"r{i}", now=1_700_000_000 + i))
            out.append(admission.admitted)
        # 60 s after the first request, exactly one slot has freed
        late = await engine.admit(ctx(engine, rid="late", now=1_700_000_060.5))
        later = await engine.admit(ctx(engine, rid="later", now=1_700_000_060.6))
        return [*out, late.admitted, later.admitted]

    assert asyncio.run(run()) == [True] * 5 + [False] * 3 + [True, False]


def test_blocked_route_reserves_nothing() -> None:
    engine = Engine(charter())

    async def run() -> int:
        for i in range(10):
            admission = await engine.admit(ctx(engine, model="big", rid=f"r{i}"))
            assert not admission.admitted and admission.reservation is None
        claim = Claim("rate:rates:0:app:req", 1, 5, "sliding", 60)
        return await engine.runtime.counters.usage(claim, 1_700_000_000)

    assert asyncio.run(run()) == 0


class BrokenCounters(MemoryCounters):
    async def admit(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        raise StorageUnavailable("redis down")


def test_counter_outage_fails_closed_by_default() -> None:
    engine = Engine(charter(), Runtime(counters=BrokenCounters()))
    admission = asyncio.run(engine.admit(ctx(engine)))
    assert not admission.admitted
    assert any("fail_closed" in v.reason for v in admission.evaluation.verdicts)


def test_counter_outage_fail_open_is_recorded() -> None:
    text = CHARTER.replace("    kind: budget\n", "    kind: budget\n    on_error: fail_open\n")
    text = text.replace("    kind: rate_limit\n", "    kind: rate_limit\n    on_error: fail_open\n")
    engine = Engine(charter(text), Runtime(counters=BrokenCounters()))
    admission = asyncio.run(engine.admit(ctx(engine)))
    assert admission.admitted
    assert sum("fail_open" in v.reason for v in admission.evaluation.verdicts) == 2


class Ledger:
    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []
        self.periods: list[tuple[dt.datetime, dt.datetime]] = []

    def spent(self, principals: Sequence[str], start: dt.datetime, end: dt.datetime) -> int:
        self.asked.append(tuple(principals))
        self.periods.append((start, end))
        return 999_500


def test_budget_counter_is_seeded_from_the_ledger() -> None:
    ledger = Ledger()
    engine = Engine(charter(), Runtime(ledger=ledger))
    admission = asyncio.run(engine.admit(ctx(engine, max_cost_micro_usd=1000)))
    assert not admission.admitted  # 999,500 + 1,000 > 1,000,000
    assert ledger.asked == [("team", "app")]  # the team's budget covers its app
    # 1,700,000,000 s is 2023-11-14 UTC: the monthly budget's period is November.
    november = dt.datetime(2023, 11, 1, tzinfo=dt.UTC), dt.datetime(2023, 12, 1, tzinfo=dt.UTC)
    assert ledger.periods == [november]


def test_shadow_budget_would_block_but_allows() -> None:
    text = CHARTER.replace("    kind: budget\n", "    kind: budget\n    mode: shadow\n")
    engine = Engine(charter(text))
    admission = asyncio.run(engine.admit(ctx(engine, max_cost_micro_usd=2_000_000)))
    assert admission.admitted
    (budget,) = [v for v in admission.evaluation.verdicts if v.control_id == "budget"]
    assert budget.action is Action.BLOCK and not budget.enforced
