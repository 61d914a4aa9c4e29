"""Standards on streamed answers: banned phrasings stopped as the text grows, required elements
judged at the end, through the gateway's own hold-back guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charter.document.model import Charter
from charter.gateway.guarding import StreamGuard
from charter.policy.context import RequestContext
from charter.policy.engine import Engine, Evaluation
from charter.policy.verdict import Action, Stage, Verdict
from charter.standards import Standards, finish_answer, finish_stream, repair
from tests.standards.conftest import BOT

FILLER = "Thanks for writing to us about your order, which we have looked at carefully. " * 6


@pytest.fixture(scope="module")
def engine(acme: Charter) -> Engine:
    return Engine(acme)


@pytest.fixture(scope="module")
def standards(acme: Charter) -> Standards:
    return Standards(acme)


def guard_for(
    engine: Engine, standards: Standards, verdicts: list[Verdict], *, holdback: int = 64
) -> StreamGuard:
    """A stream guard wired as the gateway wires it (``Guarding.stream_guard``)."""

    def check(text: str, scan_from: int) -> tuple[Evaluation, bool]:
        ctx = RequestContext(
            Stage.OUTPUT, principals=BOT, model="small", text=text, scan_from=scan_from
        )
        evaluation = engine.evaluate(ctx)
        return evaluation, evaluation.action in (Action.BLOCK, Action.ESCALATE)

    guard = StreamGuard(check, lambda t: t, verdicts, holdback=holdback, step=16)
    guard.whole_answer = standards.holds_whole_answer(BOT, "small")
    return guard


def chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def stream(
    engine: Engine, standards: Standards, answer: str, size: int, question: str = ""
) -> tuple[str, Verdict | None, list[Verdict]]:
    """What the client receives, the verdict that stopped the stream, and the verdicts."""
    verdicts: list[Verdict] = []
    guard = guard_for(engine, standards, verdicts)
    sent = ""
    for delta in chunks(answer, size):
        sent += guard.feed(delta)
        if guard.blocked is not None:
            return sent, guard.blocked, verdicts
    sent += finish_stream(guard, standards, BOT, "small", question)
    return sent, guard.blocked, verdicts


@pytest.mark.parametrize("size", [1, 3, 7, 20, 64, 1000])
def test_a_banned_phrasing_mid_stream_is_stopped_before_it_is_sent(
    engine: Engine, standards: Standards, size: int
) -> None:
    answer = FILLER + "We guarantee it arrives Friday. " + FILLER
    sent, blocked, _ = stream(engine, standards, answer, size)
    assert blocked is not None and blocked.control_id == "org-voice"
    assert "guarantee" not in sent.lower()
    assert answer.startswith(sent)


@pytest.mark.parametrize("size", [1, 5, 6, 13])
def test_a_word_that_only_starts_like_a_banned_one_is_not_stopped(
    engine: Engine, standards: Standards, size: int
) -> None:
    # "refund" is banned in the test charter; "refunded" is not, even when a chunk ends
    # right after "refund".
    answer = "Your order was refunded yesterday, and the money is on its way."
    sent, blocked, verdicts = stream(engine, standards, answer, size)
    assert blocked is None and sent == answer
    banned = [v for v in verdicts if v.evidence.get("check") == "banned"]
    assert [v.evidence["outcome"] for v in banned] == ["met"]


@pytest.mark.parametrize("size", [1, 4, 17, 1000])
def test_a_banned_phrasing_at_the_very_end_is_stopped_before_the_tail_is_sent(
    engine: Engine, standards: Standards, size: int
) -> None:
    answer = FILLER + "and of course we guarantee"
    sent, blocked, _ = stream(engine, standards, answer, size)
    assert blocked is not None and blocked.evidence["message"] == "No promises, sorry."
    assert "guarantee" not in sent


@pytest.mark.parametrize("size", [1, 9, 50, 1000])
def test_a_missing_element_is_appended_at_the_end_of_the_stream(
    engine: Engine, standards: Standards, size: int
) -> None:
    answer = FILLER + "You can have your money back within 30 days."
    sent, blocked, verdicts = stream(engine, standards, answer, size)
    assert blocked is None
    # The same answer, not streamed, comes out identical.
    whole: list[Verdict] = []
    text, refused = finish_answer(answer, standards, BOT, "small", "", whole)
    assert refused is None and sent == text == repair(answer, whole)
    assert sent.endswith("\n\nPolicy: https://acme.example/policy")
    outcomes = {v.control_id: v.evidence["outcome"] for v in verdicts if v.enforced}
    assert outcomes["team-rules"] == "repaired"


def test_a_condition_on_the_question_applies_to_streams(
    engine: Engine, standards: Standards
) -> None:
    sent, _, _ = stream(engine, standards, "Sure.", 2, question="Can I get my money back?")
    assert sent == "Sure.\n\nPolicy: https://acme.example/policy"


@pytest.mark.parametrize("size", [1, 10, 1000])
def test_a_blocking_element_holds_the_whole_stream_and_refuses_it(
    engine: Engine, standards: Standards, size: int
) -> None:
    answer = FILLER + "Some legal background on returns."
    sent, blocked, _ = stream(engine, standards, answer, size)
    assert blocked is not None and blocked.evidence["message"] == "Please ask our legal team."
    assert sent == ""  # held whole, since only the end can tell
    signed, blocked, _ = stream(engine, standards, answer + "\n-- Acme support", size)
    assert blocked is None and signed == answer + "\n-- Acme support"


def test_a_stream_stopped_by_a_guard_is_not_judged_again(
    engine: Engine, standards: Standards
) -> None:
    verdicts: list[Verdict] = []
    guard = guard_for(engine, standards, verdicts)
    guard.whole_answer = False  # as for a caller no blocking element applies to
    guard.feed(FILLER + "We guarantee it. More text follows here for a while, money back.")
    assert guard.blocked is not None
    assert finish_stream(guard, standards, BOT, "small", "") == ""
    assert not any(v.evidence.get("check") == "answer" for v in verdicts)


def test_a_held_stream_is_still_checked_by_the_guards_at_the_end(
    engine: Engine, standards: Standards
) -> None:
    verdicts: list[Verdict] = []
    guard = guard_for(engine, standards, verdicts)
    assert guard.whole_answer
    assert guard.feed(FILLER + "We guarantee it, money back.") == ""
    assert finish_stream(guard, standards, BOT, "small", "") == ""
    assert guard.blocked is not None and guard.blocked.control_id == "org-voice"
