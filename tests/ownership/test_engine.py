"""The engine decides on lookup answers it is handed, and never runs a lookup itself."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from charter.policy.context import OwnershipAnswer, RequestContext, ToolCall
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage, Verdict
from tests.ownership.conftest import charter_with

HTTP = "{argument: order_id, http: {url: 'http://127.0.0.1:9/o/{subject}/orders/{resource}'}"


def judge(
    answers: dict[str, OwnershipAnswer] | None,
    *,
    on_error: str = "deny",
    subject: str | None = "cust-1",
    order: object = "4821",
) -> Verdict:
    engine = Engine(charter_with(HTTP + f", on_error: {on_error}}}"))
    ctx = RequestContext(
        Stage.TOOL_CALL,
        tool_call=ToolCall("issue_refund", MappingProxyType({"order_id": order, "amount_usd": 5})),
        subject=subject,
        ownership=MappingProxyType(answers or {}),
    )
    (verdict,) = engine.evaluate(ctx).verdicts
    return verdict


def answer(
    owned: bool | None, subject: str = "cust-1", resource: str = "4821"
) -> dict[str, OwnershipAnswer]:
    return {"refund-policy": OwnershipAnswer(subject, resource, owned, "http GET x", "said so")}


def test_owned_allows_and_the_answer_is_evidence() -> None:
    verdict = judge(answer(True))
    assert verdict.action is Action.ALLOW
    assert verdict.evidence["ownership"]["owned"] is True


def test_not_owned_denies_naming_the_source() -> None:
    verdict = judge(answer(False))
    assert verdict.action is Action.BLOCK
    assert "order_id 4821 is not owned by subject cust-1 (http GET x: said so)" in verdict.reason


def test_a_lookup_that_was_not_run_denies() -> None:
    verdict = judge(None)
    assert verdict.action is Action.BLOCK and "was not run (fail closed)" in verdict.reason


@pytest.mark.parametrize("subject, resource", [("cust-2", "4821"), ("cust-1", "4822")])
def test_an_answer_about_another_subject_or_resource_denies(subject: str, resource: str) -> None:
    verdict = judge(answer(True, subject, resource))
    assert verdict.action is Action.BLOCK
    assert "not subject cust-1 and order_id 4821" in verdict.reason


def test_no_subject_denies_before_any_lookup() -> None:
    verdict = judge(answer(True), subject=None)
    assert verdict.action is Action.BLOCK and "no subject was given" in verdict.reason


def test_a_resource_that_is_not_text_or_number_denies() -> None:
    verdict = judge(answer(True), order=["4821"])
    assert verdict.action is Action.BLOCK


@pytest.mark.parametrize(
    "on_error, action, said",
    [
        ("deny", Action.BLOCK, "on_error: deny"),
        ("review", Action.ESCALATE, "on_error: review"),
        ("allow", Action.ALLOW, "allowed by on_error: allow"),
    ],
)
def test_a_failed_lookup_is_decided_by_on_error_and_the_reason_says_so(
    on_error: str, action: Action, said: str
) -> None:
    verdict = judge(answer(None), on_error=on_error)
    assert verdict.action is action
    assert said in verdict.reason and "said so" in verdict.reason
