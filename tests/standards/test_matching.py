"""The fast path of phrase matching finds exactly what the plain case-insensitive pattern finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from charter.standards.matching import phrase_matcher

PHRASES = ["we guarantee", "refund", "money back", "can't help", "100% refund", "guaranteed"]
MATCHER = phrase_matcher(PHRASES)
PIECES = st.sampled_from(
    [
        "we",
        "We",
        "GUARANTEE",
        "guarantee",
        "guaranteed",
        " ",
        "  ",
        "\n",
        "re",
        "fund",
        "refund",
        "REFUNDS",
        "money",
        "back",
        "can't",
        "can’t",
        "help",
        "100%",
        "x",
        "_",
        "İ",
        "é",
        ".",
        "awe",
    ]
)


def slow(text: str) -> list[tuple[int, int]]:
    assert MATCHER is not None
    return [m.span() for m in MATCHER.pattern.finditer(text) if m.end() > m.start()]


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=14).map("".join))
def test_fast_path_equals_the_plain_pattern(text: str) -> None:
    assert MATCHER is not None
    assert MATCHER.spans(text) == slow(text)
    assert MATCHER.search(text) == bool(slow(text))


def test_examples() -> None:
    assert MATCHER is not None
    assert MATCHER.spans("Sorry, I can’t  help.") == [(9, 20)]
    assert MATCHER.spans("refunded, xrefund, refund_") == []
    assert MATCHER.spans("awe guarantee; we guarantee") == [(15, 27)]
    assert MATCHER.spans("İ refund") == [(2, 8)]  # lower() changes the length: slow path
