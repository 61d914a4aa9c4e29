"""Required elements and banned phrasings on whole answers: flag, repair or block, as chartered."""

from __future__ import annotations

import pytest

from charter.document.model import Charter
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage
from charter.standards import Standards, repair
from tests.standards.conftest import BOT, EXAMPLE_DIR, SALES


@pytest.fixture(scope="module")
def engine(acme: Charter) -> Engine:
    return Engine(acme)


@pytest.fixture(scope="module")
def standards(acme: Charter) -> Standards:
    return Standards(acme)


def output(engine: Engine, text: str, principals: tuple[str, ...] = BOT) -> list:  # type: ignore[type-arg]
    ctx = RequestContext(Stage.OUTPUT, principals=principals, model="small", text=text)
    return list(engine.evaluate(ctx).verdicts)


def test_a_banned_phrasing_blocks_and_names_the_decision(engine: Engine) -> None:
    evaluation = engine.evaluate(
        RequestContext(
            Stage.OUTPUT, principals=SALES, model="small", text="We guarantee delivery by Friday."
        )
    )
    assert evaluation.action is Action.BLOCK
    deciding = evaluation.deciding
    assert deciding is not None and deciding.control_id == "org-voice"
    assert deciding.decision_ids == ("quality",)
    assert deciding.evidence["message"] == "No promises, sorry."  # the gateway's refusal text
    assert deciding.evidence["phrasings"] == ["promises"]
    (span,) = deciding.spans
    assert "We guarantee delivery by Friday."[span.start : span.end] == "We guarantee"


def test_banned_phrasings_match_whole_words_in_any_case_and_spacing(engine: Engine) -> None:
    assert (
        engine.evaluate(
            RequestContext(Stage.OUTPUT, principals=BOT, model="small", text="WE   guarantee it.")
        ).action
        is Action.BLOCK
    )
    # "refunded" is not the banned word "refund".
    clean = output(engine, "Your order was refunded yesterday.")
    assert [v.evidence["outcome"] for v in clean] == ["met"]


def test_a_flagged_phrasing_is_recorded_not_enforced(engine: Engine) -> None:
    (verdict,) = output(engine, "That was your fault, I'm afraid.")
    assert verdict.action is Action.ALLOW and verdict.enforced
    assert verdict.evidence["outcome"] == "flagged"
    assert verdict.evidence["phrasings"] == ["blame"]


def test_a_missing_required_element_is_repaired(standards: Standards) -> None:
    answer = "You can get your money back within 30 days."
    finalized = standards.finalize(answer, BOT, "small")
    (verdict,) = [v for v in finalized.verdicts if v.enforced]
    assert verdict.control_id == "team-rules" and verdict.action is Action.ALLOW
    assert verdict.evidence["outcome"] == "repaired"
    assert verdict.evidence["repaired"] == ["disclosure"]
    repaired = repair(answer, finalized.verdicts)
    assert repaired == answer + "\n\nPolicy: https://acme.example/policy"
    assert finalized.appendix == "\n\nPolicy: https://acme.example/policy"
    # Judged again, the repaired answer meets the standard and nothing more is appended.
    again = standards.finalize(repaired, BOT, "small")
    assert [v.evidence["outcome"] for v in again.verdicts if v.enforced] == ["met"]
    assert repair(repaired, again.verdicts) == repaired


def test_a_condition_on_the_question_applies_too(standards: Standards) -> None:
    finalized = standards.finalize("Sure, see below.", BOT, "small", question="money back?")
    assert "Policy: https://acme.example/policy" in finalized.appendix
    assert standards.finalize("Sure, see below.", BOT, "small").appendix == ""


def test_an_element_already_present_is_not_appended(standards: Standards) -> None:
    answer = "Money back is possible (see acme.example/policy)."
    finalized = standards.finalize(answer, BOT, "small")
    assert repair(answer, finalized.verdicts) == answer


def test_a_flagged_element_is_recorded_and_the_answer_unchanged(standards: Standards) -> None:
    answer = "Sorry, I can't help with that."
    finalized = standards.finalize(answer, BOT, "small")
    (verdict,) = [v for v in finalized.verdicts if v.enforced]
    assert verdict.action is Action.ALLOW
    assert verdict.evidence["outcome"] == "flagged" and verdict.evidence["flagged"] == ["handoff"]
    assert finalized.blocked is None and repair(answer, finalized.verdicts) == answer


def test_a_blocking_element_refuses_the_answer(standards: Standards) -> None:
    answer = "Here is some legal background on returns."
    finalized = standards.finalize(answer, BOT, "small")
    blocked = finalized.blocked
    assert blocked is not None and blocked.control_id == "team-rules"
    assert blocked.evidence["message"] == "Please ask our legal team."
    assert finalized.appendix == ""
    signed = standards.finalize(answer + "\n-- Acme support", BOT, "small")
    assert signed.blocked is None


def test_a_banned_phrasing_at_the_very_end_is_judged_on_the_whole_answer(
    engine: Engine, standards: Standards
) -> None:
    answer = "Of course, we guarantee"
    # The incremental check cannot tell "guarantee" from "guaranteed..." at the end of a prefix.
    assert [v.action for v in output(engine, answer)] == [Action.ALLOW]
    blocked = standards.finalize(answer, BOT, "small").blocked
    assert blocked is not None and blocked.control_id == "org-voice"
    assert blocked.evidence["message"] == "No promises, sorry."


def test_shadow_standards_are_recorded_not_enforced(standards: Standards) -> None:
    answer = "Hello."
    finalized = standards.finalize(answer, BOT, "small")
    (shadow,) = [v for v in finalized.verdicts if not v.enforced]
    assert shadow.control_id == "shadowed" and shadow.evidence["outcome"] == "repaired"
    assert repair(answer, finalized.verdicts) == answer


def test_out_of_scope_and_empty_answers_are_not_judged(standards: Standards) -> None:
    assert [v.control_id for v in standards.finalize("money back", SALES, "small").verdicts] == [
        "shadowed"
    ]
    assert standards.finalize("   ", BOT, "small").verdicts == ()


def test_repair_ignores_other_verdicts(standards: Standards, engine: Engine) -> None:
    answer = "Your money back, your fault."
    verdicts = output(engine, answer) + list(standards.finalize(answer, BOT, "small").verdicts)
    assert repair(answer, verdicts) == answer + "\n\nPolicy: https://acme.example/policy"


def test_example_refund_answer_gets_the_disclosure(example_standards: Charter) -> None:
    standards = Standards(example_standards, EXAMPLE_DIR)
    chain = ("support-bot", "support")
    answer = "I've started the refund for order 4821."
    finalized = standards.finalize(answer, chain, "sim-small", question="refund order 4821")
    repaired = repair(answer, finalized.verdicts)
    assert repaired.endswith("Full policy: https://northwind.example/refunds")
    cannot = "I'm sorry, I can't help with questions about other shops."
    assert repair(cannot, standards.finalize(cannot, chain, "sim-small").verdicts).endswith(
        "https://northwind.example/help/contact"
    )
    engine = Engine(example_standards)
    promise = RequestContext(
        Stage.OUTPUT, principals=chain, model="sim-small", text="We guarantee delivery tomorrow."
    )
    assert engine.evaluate(promise).action is Action.BLOCK
