"""Streams are scanned in linear time: each step looks only at new text and a scanner's reach.

Before, every 64 characters the whole answer so far was scanned again, so a 16 KB streamed
answer cost about 140 whole-answer scans' worth of CPU. These pin that the work now grows
linearly, that a hit anywhere in a long answer still stops it before it leaves, and that spans
found in a window point at the right characters of the whole answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charter.document.loader import load_charter_text
from charter.gateway.guarding import Guarding, Inbound
from charter.guards.base import reach_of
from charter.guards.secrets import SecretsScanner
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage
from charter.providers.types import ChatRequest

CHARTER = """\
format: 1
organization: T
decisions:
  - {id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [secrets, links]}
controls:
  - id: secrets
    kind: guard
    serves: [d]
    settings: {scanner: secrets, stages: [output]}
  - id: links
    kind: guard
    serves: [d]
    settings: {scanner: urls, stages: [output], allow_domains: [example.com], action: redact}
"""
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
FILLER = "Our tents pack down small enough for a day hike, and the poles are aluminium. "


@pytest.fixture
def guarding() -> Guarding:
    return Guarding(Engine(load_charter_text(CHARTER).require()))


def feed(guarding: Guarding, answer: str, size: int = 16) -> tuple[str, Action | None]:
    inbound = Inbound(ChatRequest(model="m", messages=()), system_prompt="")
    guard = guarding.stream_guard(inbound, RequestContext(Stage.REQUEST), [])
    released = "".join(guard.feed(answer[i : i + size]) for i in range(0, len(answer), size))
    released += guard.finish()
    return released, guard.blocked.action if guard.blocked else None


def long_answer(chars: int) -> str:
    return (FILLER * (chars // len(FILLER) + 1))[:chars]


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The length of every text the secrets scanner is handed."""
    sizes: list[int] = []
    original = SecretsScanner.scan

    def counting(self: SecretsScanner, text: str):  # type: ignore[no-untyped-def]
        sizes.append(len(text))
        return original(self, text)

    monkeypatch.setattr(SecretsScanner, "scan", counting)
    yield sizes


def test_the_work_grows_linearly_with_the_answer(guarding: Guarding, scanned: list[int]) -> None:
    answer = long_answer(40_000)
    released, blocked = feed(guarding, answer)
    assert released == answer and blocked is None
    reach = reach_of(SecretsScanner())
    assert reach is not None
    steps = len(scanned) - 1  # the last scan sees the whole answer
    assert steps >= len(answer) // 64 - 1
    # Each step sees at most its new text and the scanner's reach; rescanning the answer so far
    # at every step would hand the scanner about 12.5 million characters here.
    assert max(scanned[:-1]) <= reach + 64 + 16
    assert sum(scanned) <= 2 * len(answer) + steps * (reach + 80)
    assert scanned[-1] == len(answer)


def test_a_secret_deep_in_a_long_answer_never_leaves(guarding: Guarding) -> None:
    before = long_answer(30_000)
    answer = before + f"Use the token {SECRET} to log in. " + long_answer(2_000)
    released, blocked = feed(guarding, answer, size=7)
    assert blocked is Action.BLOCK
    assert SECRET[:8] not in released
    assert len(released) <= len(before) + len("Use the token ")


def test_a_secret_split_across_many_chunks_is_still_caught(guarding: Guarding) -> None:
    answer = long_answer(9_000) + " " + SECRET + " " + long_answer(600)
    released, blocked = feed(guarding, answer, size=3)  # the token arrives in 14 pieces
    assert blocked is Action.BLOCK and "ghp_" not in released


def test_a_redaction_found_in_a_window_masks_the_right_characters(guarding: Guarding) -> None:
    link = "https://evil.test/pay-here"
    answer = long_answer(12_345) + f" Pay at {link} today. " + long_answer(3_000)
    released, blocked = feed(guarding, answer)
    assert blocked is None
    assert link not in released
    start = released.index("[redacted]")
    assert released[:start].endswith(" Pay at ")
    assert released[start + len("[redacted]") :].startswith(" today. ")


def test_a_scanner_that_needs_the_whole_answer_still_gets_it() -> None:
    """``length`` declares no reach: it is always handed the whole answer, so a stream that
    grows past the limit is stopped as it crosses it, not at the end."""
    text = CHARTER.replace(
        "{scanner: urls, stages: [output], allow_domains: [example.com], action: redact}",
        "{scanner: length, stages: [output], max_chars: 5000}",
    )
    guarding = Guarding(Engine(load_charter_text(text).require()))
    released, blocked = feed(guarding, long_answer(20_000))
    assert blocked is Action.BLOCK
    assert len(released) <= 5000
