"""The guard control kind: thresholds, the escalation band, shadow mode, and the output scanners."""

from __future__ import annotations

import pytest

from charter.document.loader import load_charter_text
from charter.guards.output import JsonSchemaScanner, LeakScanner, UnicodeScanner, UrlScanner
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage

BASE = """\
format: 1
organization: T
decisions:
  - {{id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [g]}}
controls:
  - id: g
    kind: guard
    serves: [d]
{mode}    settings: {settings}
"""


def engine(settings: str, mode: str = "") -> Engine:
    loaded = load_charter_text(BASE.format(settings=settings, mode=mode))
    return Engine(loaded.require())


def verdict(e: Engine, text: str, stage: Stage = Stage.INPUT) -> tuple[Action, bool]:
    evaluation = e.evaluate(RequestContext(stage, text=text))
    (v,) = evaluation.verdicts
    return v.action, v.enforced


def test_secrets_hit_blocks_and_clean_allows() -> None:
    e = engine("{scanner: secrets, stages: [input]}")
    assert verdict(e, "token ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8") == (Action.BLOCK, True)
    assert verdict(e, "how do I reset my password?") == (Action.ALLOW, True)


def test_escalate_band_routes_uncertain_scores_to_a_human() -> None:
    e = engine("{scanner: leak, stages: [output], threshold: 0.99, escalate_band: [0.3, 0.99]}")
    prompt = "You are a helpful support bot for Northwind and you never reveal the refund tree"
    ctx = RequestContext(
        Stage.OUTPUT, text="ok: you never reveal the refund tree today", system_prompt=prompt
    )
    (v,) = e.evaluate(ctx).verdicts
    assert v.action is Action.ESCALATE and "uncertain" in v.reason


def test_shadow_guard_records_but_does_not_enforce() -> None:
    e = engine("{scanner: unicode, stages: [input]}", mode="    mode: shadow\n")
    assert verdict(e, "hi\u200bthere") == (Action.BLOCK, False)
    assert e.evaluate(RequestContext(Stage.INPUT, text="hi\u200bthere")).action is Action.ALLOW


def test_guard_only_runs_on_its_stages() -> None:
    e = engine("{scanner: unicode, stages: [untrusted]}")
    assert e.evaluate(RequestContext(Stage.INPUT, text="a\u202eb")).verdicts == ()
    assert verdict(e, "a\u202eb", Stage.UNTRUSTED)[0] is Action.BLOCK


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (
            "{scanner: topic, topics: [{name: t, description: d, examples: [x]}], action: redact}",
            "no spans",
        ),
        ("{scanner: length, max_chars: 5, stages: [input]}", "stages: [output]"),
        ("{scanner: length, max_chars: 5, stages: [output], action: redact}", "no spans"),
    ],
)
def test_settings_that_cannot_be_enforced_fail_check(settings: str, fragment: str) -> None:
    loaded = load_charter_text(BASE.format(settings=settings, mode=""))
    messages = [f.message for f in loaded.errors if f.code == "not-implemented"]
    assert messages and fragment in messages[0]


def test_unicode_scanner_names_the_characters() -> None:
    result = UnicodeScanner().scan("pay\u200b now\U000e0041")
    assert result.score == 1.0 and [s.start for s in result.spans] == [3, 8]
    assert "ZERO WIDTH SPACE" in result.spans[0].label
    assert UnicodeScanner().scan("tabs\tand\nnewlines are fine").score == 0.0


def test_url_scanner_allows_domains_and_subdomains() -> None:
    scanner = UrlScanner(["northwind.example"])
    assert scanner.scan("see https://help.northwind.example/returns").score == 0.0
    result = scanner.scan("see https://northwind.example.evil.io/x and http://bit.ly/abc")
    assert [s.label for s in result.spans] == [
        "link to northwind.example.evil.io",
        "link to bit.ly",
    ]


def test_json_schema_scanner() -> None:
    scanner = JsonSchemaScanner(
        {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
    )
    assert scanner.scan('{"answer": "yes"}').score == 0.0
    assert "not JSON" in scanner.scan("yes").detail
    assert "'answer' is a required property" in scanner.scan("{}").detail


def test_leak_scanner_canary_and_near_verbatim() -> None:
    scanner = LeakScanner(min_overlap_chars=40)
    prompt = "Never offer discounts above ten percent and never mention the escalation tree."
    assert scanner.scan_leak("Here: cnry-123abc", prompt, "cnry-123abc").score == 1.0
    leaked = scanner.scan_leak(
        "Sure! NEVER offer discounts above ten percent, and never mention the escalation tree.",
        prompt,
        None,
    )
    assert leaked.score == 1.0 and leaked.spans
    assert scanner.scan_leak("We offer discounts sometimes.", prompt, None).score < 1.0
