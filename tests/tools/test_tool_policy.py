"""The tool_policy control's stateless rules, through the engine as the gateway will call it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from charter.document.loader import load_charter, load_charter_text
from charter.document.model import Charter
from charter.policy.context import RequestContext, ToolCall
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage, Verdict
from charter.tools import address_domains

EXAMPLE = Path(__file__).parents[2] / "examples" / "support-desk" / "charter.yaml"
ORDERS = {"customer_orders": ["4821", "4822"]}


@pytest.fixture(scope="module")
def example() -> Engine:
    return Engine(load_charter(EXAMPLE).require())


def call(
    engine: Engine,
    arguments: dict[str, Any],
    *,
    tool: str = "issue_refund",
    attributes: dict[str, Any] | None = None,
    subject: str | None = "cust-1",
    history: tuple[str, ...] = (),
) -> list[Verdict]:
    ctx = RequestContext(
        Stage.TOOL_CALL,
        principals=engine.principals_of("support-bot"),
        tool_call=ToolCall(tool, arguments),
        subject=subject,
        history=history,
        attributes=ORDERS if attributes is None else attributes,
    )
    return list(engine.evaluate(ctx).verdicts)


def one(verdicts: list[Verdict]) -> Verdict:
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def rules(verdict: Verdict) -> list[str]:
    return [r["rule"] for r in verdict.evidence["rules"]]


def test_example_enforces_refunds_at_tool_call_stage(example: Engine) -> None:
    tool_policies = [c.id for c in example.controls_for(Stage.TOOL_CALL)]
    assert tool_policies == ["refund-policy", "outbound-email-policy"]


def test_small_refund_on_own_order_is_allowed(example: Engine) -> None:
    verdict = one(call(example, {"order_id": "4821", "amount_usd": 30}))
    assert verdict.action is Action.ALLOW
    assert verdict.control_id == "refund-policy"
    assert verdict.decision_ids == ("refund-limits", "own-orders-only")
    assert verdict.evidence["verdict"] == "allow" and verdict.evidence["rules"] == []


def test_refund_over_the_cap_goes_to_review(example: Engine) -> None:
    verdict = one(call(example, {"order_id": "4821", "amount_usd": 60}))
    assert verdict.action is Action.ESCALATE
    assert rules(verdict) == ["caps[0]"]
    assert "amount_usd` 60 is over the cap of 40 [rule caps[0]]" in verdict.reason


def test_refund_on_another_customers_order_is_denied(example: Engine) -> None:
    verdict = one(call(example, {"order_id": "9999", "amount_usd": 30}))
    assert verdict.action is Action.BLOCK and rules(verdict) == ["ownership"]
    assert "order_id 9999 is not among the customer_orders of subject cust-1" in verdict.reason


def test_ownership_without_context_fails_closed_and_says_what_to_pass(example: Engine) -> None:
    verdict = one(call(example, {"order_id": "4821", "amount_usd": 30}, attributes={}))
    assert verdict.action is Action.BLOCK
    assert "supplied no `customer_orders` context" in verdict.reason
    assert "fail closed" in verdict.reason
    bad = one(
        call(example, {"order_id": "4821", "amount_usd": 5}, attributes={"customer_orders": "4821"})
    )
    assert bad.action is Action.BLOCK and "must be a list" in bad.reason


def test_ownership_compares_ids_as_text(example: Engine) -> None:
    verdict = one(
        call(example, {"order_id": "4821", "amount_usd": 5}, attributes={"customer_orders": [4821]})
    )
    assert verdict.action is Action.ALLOW


@pytest.mark.parametrize(
    ("arguments", "rule", "words"),
    [
        ({"amount_usd": 30}, "arguments.order_id", "missing required argument `order_id`"),
        ({"order_id": "4821"}, "arguments.amount_usd", "missing required argument `amount_usd`"),
        ({"order_id": "4821", "amount_usd": "thirty"}, "arguments.amount_usd", "must be a number"),
        ({"order_id": "4821", "amount_usd": True}, "arguments.amount_usd", "must be a number"),
        ({"order_id": "4821", "amount_usd": float("nan")}, "arguments.amount_usd", "number"),
        ({"order_id": "4821", "amount_usd": 0}, "arguments.amount_usd", "below the minimum"),
        ({"order_id": "4821", "amount_usd": 6000}, "arguments.amount_usd", "above the maximum"),
        ({"order_id": 4821, "amount_usd": 5}, "arguments.order_id", "must be a string"),
        ({"order_id": "48-21", "amount_usd": 5}, "arguments.order_id", "does not match"),
        (
            {"order_id": "4821", "amount_usd": 5, "reason": "x" * 501},
            "arguments.reason",
            "501 characters, more than 500",
        ),
        (
            {"order_id": "4821", "amount_usd": 5, "coupon": "FREE"},
            "arguments",
            "unknown argument `coupon`",
        ),
    ],
)
def test_malformed_arguments_are_denied_naming_the_rule(
    example: Engine, arguments: dict[str, Any], rule: str, words: str
) -> None:
    verdict = one(call(example, arguments))
    assert verdict.action is Action.BLOCK
    assert rule in rules(verdict)
    assert words in verdict.reason and f"[rule {rule}]" in verdict.reason


def test_optional_argument_may_be_left_out_or_null(example: Engine) -> None:
    for args in (
        {"order_id": "4821", "amount_usd": 5},
        {"order_id": "4821", "amount_usd": 5, "reason": None},
    ):
        assert one(call(example, args)).action is Action.ALLOW


def test_rates_per_subject_need_a_subject(example: Engine) -> None:
    verdict = one(call(example, {"order_id": "4821", "amount_usd": 5}, subject=None))
    assert verdict.action is Action.BLOCK and "no subject was given" in verdict.reason
    assert set(rules(verdict)) == {"rates[0]", "rates[1]"}


def test_a_tool_no_policy_names_gets_no_verdict(example: Engine) -> None:
    assert call(example, {"q": "status of 4821"}, tool="lookup_order") == []


# -- rules the example does not use ---------------------------------------------------------------

APPROVAL = """\
  - id: approval
    kind: approval
    serves: [d]
    settings: {reviewers: [reviewer]}
"""
PRINCIPALS = """\
principals:
  - {id: bot, kind: app}
"""


def charter_text(controls: str) -> str:
    """A charter with one decision `d` that every control serves (both directions agree)."""
    ids = ", ".join(re.findall(r"^  - \{?id: ([a-z0-9-]+)", controls, re.M))
    return (
        "format: 1\norganization: Acme\ndecisions:\n"
        f"  - {{id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, "
        f"enforced_by: [{ids}]}}\ncontrols:\n{controls}{PRINCIPALS}"
    )


def engine_for(policy: str, *, mode: str = "enforce") -> Engine:
    return Engine(
        load_charter_text(charter_text(policy.replace("MODE", mode) + APPROVAL)).require()
    )


EMAIL = """\
  - id: email-policy
    kind: tool_policy
    serves: [d]
    mode: MODE
    settings:
      tool: send_email
      arguments:
        to: {type: string}
        body: {type: string, required: false}
      sequences:
        - {after: [read_inbox, read_document], argument: to, allow_domains: [northwind.example]}
"""


@pytest.mark.parametrize(
    ("to", "history", "action"),
    [
        ("ann@partner.example", (), Action.ALLOW),
        ("ann@partner.example", ("lookup_order", "read_inbox"), Action.BLOCK),
        ("ops@northwind.example", ("read_inbox",), Action.ALLOW),
        ("ops@eu.northwind.example", ("read_inbox",), Action.ALLOW),
        ("ops@northwind.example.evil.test", ("read_document",), Action.BLOCK),
        ("Ops <ops@northwind.example>, x@evil.test", ("read_inbox",), Action.BLOCK),
        ("https://northwind.example/inbox", ("read_inbox",), Action.ALLOW),
        ("evil.test", ("read_inbox",), Action.BLOCK),
    ],
)
def test_sequences_restrict_addresses_after_reading(
    to: str, history: tuple[str, ...], action: Action
) -> None:
    verdict = one(call(engine_for(EMAIL), {"to": to}, tool="send_email", history=history))
    assert verdict.action is action, verdict.reason
    if action is Action.BLOCK:
        assert (
            rules(verdict) == ["sequences[0]"]
            and "only northwind.example allowed" in verdict.reason
        )


def test_address_domains() -> None:
    assert address_domains("Ann <ann@Example.COM>; bob@corp.example.") == [
        "example.com",
        "corp.example",
    ]
    assert address_domains("https://a.example:8443/x?y=1") == ["a.example"]


def test_shadow_policy_records_without_enforcing() -> None:
    verdict = one(
        call(
            engine_for(EMAIL, mode="shadow"),
            {"to": "x@evil.test"},
            tool="send_email",
            history=("read_inbox",),
        )
    )
    assert verdict.action is Action.BLOCK and not verdict.enforced
    assert verdict.effective is Action.ALLOW


def test_review_true_always_reviews_and_enums_and_integers_are_checked() -> None:
    engine = engine_for(
        """\
  - id: wire-policy
    kind: tool_policy
    serves: [d]
    settings:
      tool: wire
      review: true
      arguments:
        currency: {type: string, enum: [EUR, USD]}
        cents: {type: integer, minimum: 1}
        urgent: {type: boolean, required: false}
"""
    )
    ok = one(call(engine, {"currency": "EUR", "cents": 100.0, "urgent": False}, tool="wire"))
    assert ok.action is Action.ESCALATE and rules(ok) == ["review"]
    bad = one(call(engine, {"currency": "GBP", "cents": 1.5, "urgent": "yes"}, tool="wire"))
    assert bad.action is Action.BLOCK
    assert rules(bad) == ["arguments.currency", "arguments.cents", "arguments.urgent", "review"]
    assert "not one of 'EUR', 'USD'" in bad.reason and "must be an integer" in bad.reason


def test_policy_without_declared_arguments_constrains_none() -> None:
    engine = engine_for(
        """\
  - id: any-policy
    kind: tool_policy
    serves: [d]
    settings: {tool: ping, caps: [{argument: n, max: 5, over: deny}]}
"""
    )
    assert one(call(engine, {"n": 3, "extra": 1}, tool="ping")).action is Action.ALLOW
    missing = one(call(engine, {"extra": 1}, tool="ping"))
    assert missing.action is Action.BLOCK and "`n` is missing or not a number" in missing.reason
    over = one(call(engine, {"n": 6}, tool="ping"))
    assert over.action is Action.BLOCK and rules(over) == ["caps[0]"]


# -- the format refuses policies that could not work ---------------------------------------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ("{tool: t, arguments: {a: {type: string, minimum: 1}}}", "minimum and maximum apply"),
        ("{tool: t, arguments: {a: {type: number, pattern: x}}}", "pattern and max_length apply"),
        ("{tool: t, arguments: {a: {type: number, minimum: 5, maximum: 1}}}", "greater than"),
        ("{tool: t, arguments: {a: {type: number}}, caps: [{argument: b, max: 1}]}", "`b`"),
        (
            "{tool: t, arguments: {a: {type: string}}, caps: [{argument: a, max: 1}]}",
            "not a number",
        ),
        ("{tool: t, compensate: {url: 'http://x', secret_env: K}}", "reversible"),
        ("{tool: t, rates: [{window: 1d}]}", "either count"),
        ("{tool: t, hold: forever}", "hold"),
    ],
)
def test_format_refuses_inconsistent_policies(settings: str, words: str) -> None:
    policy = f"  - {{id: p, kind: tool_policy, serves: [d], settings: {settings}}}\n"
    loaded = load_charter_text(charter_text(policy + APPROVAL))
    messages = " ".join(f.message for f in loaded.errors)
    assert loaded.errors and words in messages, messages


def test_format_refuses_an_unsigned_notification_webhook() -> None:
    approval = APPROVAL.replace(
        "settings: {reviewers: [reviewer]}",
        "settings: {reviewers: [reviewer], notify_webhook: 'https://hooks.example/x'}",
    )
    loaded = load_charter_text(charter_text(approval))
    assert any("webhook_secret_env" in f.message for f in loaded.errors)


def test_example_charter_checks_clean_with_refunds_enforced() -> None:
    loaded = load_charter(EXAMPLE)
    assert loaded.ok, [f.render() for f in loaded.errors]
    charter: Charter = loaded.require()
    modes = {c.id: c.mode.value for c in charter.controls}
    assert modes["refund-policy"] == modes["refund-approval"] == "enforce"
