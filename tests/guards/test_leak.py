"""The leak guard's protected values: matching through disguises, settings, and streams."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charter.document.loader import load_charter_text
from charter.errors import ConfigurationError
from charter.gateway.guarding import StreamGuard
from charter.guards.control import _leak
from charter.guards.output import LeakScanner
from charter.guards.protected import (
    ProtectedValue,
    ShortValue,
    normalise,
    source_offsets,
    source_start_of_tail,
)
from charter.policy.context import RequestContext
from charter.policy.engine import Engine, Evaluation
from charter.policy.verdict import Action, Stage, Verdict

CODE = "tram=32"


def found(value: str, text: str) -> list[tuple[str, str]]:
    """(kind, the characters of ``text`` the span covers) for each match."""
    protected = ProtectedValue.build(value, "code")
    return [(m.kind, text[m.start : m.end]) for m in protected.find(text, normalise(text))]


@pytest.mark.parametrize(
    ("text", "kind", "covered"),
    [
        ("the code is tram=32, enjoy", "verbatim", "tram=32"),
        ("the code is t r a m = 3 2!", "normalised", "t r a m = 3 2"),
        ("it is TRAM-32 now", "normalised", "TRAM-32"),
        ("it is t.r.a.m.3.2", "normalised", "t.r.a.m.3.2"),
        ("wide: \uff54\uff52\uff41\uff4d\uff1d\uff13\uff12.", "normalised", "ｔｒａｍ＝３２"),
        ("backwards: 23=mart.", "reversed", "23=mart"),
        ("hex: 7472616d3d3332 ok", "hex", "7472616d3d3332"),
        ("hex: 74 72 61 6D 3D 33 32 ok", "hex", "74 72 61 6D 3D 33 32"),
        ("bytes: 0x74 0x72 0x61 0x6d 0x3d 0x33 0x32", "hex", "0x74 0x72 0x61 0x6d 0x3d 0x33 0x32"),
        ("codes: 116 114 97 109 61 51 50.", "decimal", "116 114 97 109 61 51 50"),
        ("codes: 116 114 097 109 061 051 050.", "decimal", "116 114 097 109 061 051 050"),
    ],
)
def test_disguised_value_is_found_and_the_span_covers_what_the_model_wrote(
    text: str, kind: str, covered: str
) -> None:
    assert found(CODE, text) == [(kind, covered)]


@pytest.mark.parametrize("prefix", [b"", b"x", b"xy", b"the code: "])
def test_base64_is_found_at_every_alignment_inside_a_longer_encoding(prefix: bytes) -> None:
    encoded = base64.b64encode(prefix + CODE.encode() + b" and more").decode()
    hits = found(CODE, f"Here you go: {encoded}")
    assert [kind for kind, _ in hits] == ["base64"]
    assert hits[0][1] in encoded


def test_ordinary_answers_are_not_hits() -> None:
    for text in (
        "The tram is 32 minutes late.",
        "Trams run every 32 minutes; marts close at 23.",
        "Access denied. Please try again.",
        "7472 6d3d",
    ):
        assert found(CODE, text) == [], text


def test_every_occurrence_is_a_span_and_verbatim_is_not_reported_twice() -> None:
    text = "tram=32 then T-R-A-M-3-2"
    assert found(CODE, text) == [("verbatim", "tram=32"), ("normalised", "T-R-A-M-3-2")]


def test_short_values_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ShortValue, match="needs at least 4"):
        ProtectedValue.build("a-1-b", "$CODE")  # 3 letters and digits
    with pytest.raises(ShortValue):
        ProtectedValue.build("\u267f\u267f\u267f", "$CODE")  # symbols fold to nothing


@given(st.text(max_size=60))
def test_offsets_line_up_with_the_normal_form(text: str) -> None:
    offsets = source_offsets(text)
    assert len(offsets) == len(normalise(text))
    assert offsets == sorted(offsets)
    folded = normalise(text)
    for tail in range(len(folded) + 1):
        start = source_start_of_tail(text, tail)
        assert len(normalise(text[start:])) >= tail
        assert tail == 0 or offsets[len(folded) - tail] == start


def test_the_canary_is_found_spaced_out_and_encoded() -> None:
    canary = "cnry-0123456789abcdef"
    scanner = LeakScanner()
    spaced = "ref: " + " ".join(canary.upper())
    result = scanner.scan_leak(spaced, "", canary)
    assert result.score == 1.0 and result.detail == "canary leaked (normalised)"
    assert spaced[result.spans[0].start : result.spans[0].end] == " ".join(canary.upper())
    encoded = base64.b64encode(f"note {canary}".encode()).decode()
    assert scanner.scan_leak(encoded, "", canary).detail == "canary leaked (base64)"
    assert scanner.scan_leak("nothing here", "", canary).score == 0.0


def test_hold_from_names_where_a_value_may_be_starting() -> None:
    scanner = LeakScanner(protected=[ProtectedValue.build(CODE, "code")])
    assert scanner.hold_from("All fine here.", None) is None
    text = "All fine. t" + " " * 400 + "r ..."
    assert scanner.hold_from(text, None) == text.index("t ")
    # the start of a hex or reversed form is held too
    assert scanner.hold_from("codes follow: 74 72 6", None) == len("codes follow: ")
    assert scanner.hold_from("see 23=", None) == len("see ")


# --- settings ---------------------------------------------------------------------------------

CHARTER = """\
format: 1
organization: T
decisions:
  - {{id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [g]}}
controls:
  - id: g
    kind: guard
    serves: [d]
    settings:
      scanner: leak
      stages: [output]
{extra}
"""


def engine(extra: str) -> Engine:
    return Engine(load_charter_text(CHARTER.format(extra=extra)).require())


def output(e: Engine, text: str) -> Evaluation:
    return e.evaluate(RequestContext(Stage.OUTPUT, text=text))


def test_protected_value_from_the_environment_blocks_answers_that_carry_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ACCESS_CODE", "Open-Sesame-77")
    e = engine("      protect: [{env: TEST_ACCESS_CODE}]\n      phrases: [Project Bluebird]")
    blocked = output(e, "psst: o p e n s e s a m e 7 7")
    assert blocked.action is Action.BLOCK
    (verdict,) = blocked.verdicts
    assert "$TEST_ACCESS_CODE leaked (normalised)" in verdict.reason
    assert "sesame" not in verdict.reason.lower()  # the value itself is never in a verdict
    assert output(e, "It ships with project-bluebird next month.").action is Action.BLOCK
    assert output(e, "Your order ships next month.").action is Action.ALLOW


def test_a_missing_environment_variable_fails_at_load_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_ACCESS_CODE", raising=False)
    with pytest.raises(ConfigurationError, match=r"\$TEST_ACCESS_CODE, which is not set") as exc:
        engine("      protect: [{env: TEST_ACCESS_CODE}]")
    assert exc.value.hint is not None and "export TEST_ACCESS_CODE" in exc.value.hint


def test_a_too_short_protected_value_fails_at_load() -> None:
    from charter.document.model import LeakGuard

    settings = LeakGuard.model_validate(
        {"scanner": "leak", "stages": ["output"], "protect": [{"env": "PIN"}]}
    )
    with pytest.raises(ConfigurationError, match=r"value of \$PIN has 3 letters and digits"):
        _leak(settings, {"PIN": "1-2-3"})


def test_a_too_short_phrase_is_a_charter_finding_with_its_line() -> None:
    loaded = load_charter_text(CHARTER.format(extra="      phrases: [a b c]"))
    (error,) = loaded.errors
    assert "fewer than 4 letters and digits" in error.message and error.line == 12


def test_a_secret_cannot_be_written_into_the_charter_as_a_protect_value() -> None:
    loaded = load_charter_text(CHARTER.format(extra="      protect: [{value: hunter22}]"))
    assert loaded.errors


# --- streams ----------------------------------------------------------------------------------


def stream(hold: bool) -> tuple[str, bool]:
    """Feed a value spread over 600 characters, in chunks, through a guard with a 256 hold-back."""
    scanner = LeakScanner(protected=[ProtectedValue.build(CODE, "code")])

    def check(text: str, scan_from: int) -> tuple[Evaluation, bool]:
        if scanner.scan_leak(text, "", None).score < 1.0:
            return Evaluation((), "v"), False
        block = Verdict(Action.BLOCK, "g", ("d",), "leak hit", Stage.OUTPUT)
        return Evaluation((block,), "v"), True

    guard = StreamGuard(
        check,
        lambda text: text,
        [],
        holdback=256,
        hold=(lambda text, start: scanner.hold_from(text, None)) if hold else None,
    )
    answer = "Happy to help with that. " * 12 + (" " * 100).join("tram=32") + " done."
    released = ""
    for i in range(0, len(answer), 9):
        released += guard.feed(answer[i : i + 9])
    released += guard.finish()
    return released, guard.blocked is not None


def test_a_value_spread_wider_than_the_window_never_leaves_a_stream() -> None:
    """Pins the bug where the first letters of a spaced-out value left before the hit."""
    released, blocked = stream(hold=True)
    assert blocked
    assert "t" not in released[len("Happy to help with that. " * 12) :]
    assert released.startswith("Happy to help with that. " * 5)  # clean text still flows


def test_without_the_hold_the_start_of_the_value_would_have_left() -> None:
    released, blocked = stream(hold=False)
    assert blocked
    assert "t" in released[len("Happy to help with that. " * 12) :]
