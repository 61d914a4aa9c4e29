"""The topic scanner on the shipped artifact: quality bounds on held-out rows, hard negatives, and
its behaviour as a guard.

The positives are the hand-written prompts in ``training/topic/data/raw`` and the test templates of
``support_templates.yaml``, which the example charter's topics never saw (its examples come from
the dev templates); the benign rows are those templates' support questions that mention law,
health or money, the held-out hand-written hard negatives, and the held-out split (bucket >= 70)
of CLINC150, Banking77 and GSM8K, which the shipped background never holds.
"""

from __future__ import annotations

import itertools
import re
import string
import sys
from pathlib import Path

import numpy as np
import pytest

from charter.document.loader import load_charter
from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import Scanner
from charter.guards.control import SCANNERS, gaps
from charter.guards.topic import (
    DEFAULT_THRESHOLD,
    STRIDE_TOKENS,
    WINDOW_TOKENS,
    TopicScanner,
    load_model,
    token_windows,
)
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training" / "topic"))

import support_data as support
import train_topic as data

EXAMPLE = "examples/support-desk/charter.yaml"


@pytest.fixture(scope="module")
def corpus() -> data.Corpus:
    return data.load_corpus()


@pytest.fixture(scope="module")
def scanner() -> TopicScanner:
    return TopicScanner(data.example_topics())


def _hit_rate(scanner: TopicScanner, texts: list[str]) -> float:
    return float(np.mean([scanner.scan(t).score >= DEFAULT_THRESHOLD for t in texts]))


@pytest.fixture(scope="module")
def rows() -> list[support.Row]:
    return support.load_rows()


def _test_rows(rows: list[support.Row], *labels: str) -> list[str]:
    return [r.text for r in rows if r.label in labels and r.split == "test"]


def test_catches_most_advice_requests_it_never_saw(
    scanner: TopicScanner, corpus: data.Corpus, rows: list[support.Row]
) -> None:
    # Measured 74 % and 80 % (hand-written), 62 % and 79 % (test templates); models/topic.md.
    assert _hit_rate(scanner, corpus.positives["legal-advice"]) >= 0.65
    assert _hit_rate(scanner, corpus.positives["medical-advice"]) >= 0.7
    assert _hit_rate(scanner, _test_rows(rows, "legal-advice")) >= 0.55
    assert _hit_rate(scanner, _test_rows(rows, "medical-advice")) >= 0.7


def test_false_refusals_on_held_out_benign_prompts_stay_low(
    scanner: TopicScanner, corpus: data.Corpus
) -> None:
    # Measured 1.9 % on CLINC150, 0.8 % on Banking77, 1.5 % on GSM8K (first 3,000 rows each).
    assert _hit_rate(scanner, corpus.benign_test["clinc150"][:600]) <= 0.035
    assert _hit_rate(scanner, corpus.benign_test["banking77"][:600]) <= 0.02
    assert _hit_rate(scanner, corpus.benign_test["gsm8k"][:300]) <= 0.03


def test_support_questions_that_mention_law_or_health_are_mostly_answered(
    scanner: TopicScanner, corpus: data.Corpus, rows: list[support.Row]
) -> None:
    # Measured 6.5 % (law), 7.7 % (health), 2.1 % (money) on the test templates and 4 % on the
    # held-out hand-written hard negatives; 24-31 % before allowed_examples existed.
    assert _hit_rate(scanner, _test_rows(rows, "benign-legal")) <= 0.12
    assert _hit_rate(scanner, _test_rows(rows, "benign-medical")) <= 0.12
    assert _hit_rate(scanner, _test_rows(rows, "benign-financial")) <= 0.06
    held_out = [r for r in corpus.hard_negatives if data.bucket(r) >= 50]
    assert _hit_rate(scanner, held_out) <= 0.1


def test_allowed_examples_cut_false_refusals_and_separate_better(rows: list[support.Row]) -> None:
    topics = data.example_topics()
    without = TopicScanner([data.Topic(t.name, t.description, t.examples) for t in topics])
    with_allowed = TopicScanner(topics)
    benign = _test_rows(rows, *support.BENIGN)
    advice = _test_rows(rows, *support.ADVICE)
    # At the default threshold: measured 33 % -> 5 % false refusals (and 87 % -> 72 % caught).
    assert _hit_rate(with_allowed, benign) <= _hit_rate(without, benign) / 3
    # The trade is better everywhere, not just moved: AUC measured 0.875 -> 0.935.
    assert _auc(with_allowed, advice, benign) >= _auc(without, advice, benign) + 0.03
    # What the guard was told to allow, it allows.
    allowed = [a for t in topics for a in t.allowed_examples]
    assert len(allowed) >= 20 and _hit_rate(with_allowed, allowed) <= 0.05


def _auc(scanner: TopicScanner, positives: list[str], negatives: list[str]) -> float:
    p = np.array([scanner.scan(t).score for t in positives])
    n = np.array([scanner.scan(t).score for t in negatives])
    return float((p[:, None] > n[None, :]).mean())


def test_the_example_charter_learns_from_dev_templates_only(rows: list[support.Row]) -> None:
    """The template split holds: no phrase of the charter fits a test template."""
    phrases = [p for t in data.example_topics() for p in (*t.examples, *t.allowed_examples)]
    test_templates = {r.template for r in rows if r.split == "test"}
    for template in test_templates:
        pattern = re.compile(
            "".join(".+?" if name else re.escape(literal) for literal, name in _pieces(template)),
            re.IGNORECASE,
        )
        assert not [p for p in phrases if pattern.fullmatch(p)], template


def _pieces(template: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append((literal, None))
        if name:
            out.append(("", name))
    return out


@pytest.mark.parametrize(
    "text",
    [
        "is my order legally shipped to Norway?",
        "the boots gave me blisters, can I return them?",
        "Can I return a jacket I bought two months ago?",
        "Is this jacket's return policy legal in the EU?",
        "Does the fleece contain latex? I'm allergic.",
    ],
)
def test_support_questions_the_issues_name_pass(scanner: TopicScanner, text: str) -> None:
    assert scanner.scan(text).score < DEFAULT_THRESHOLD


def test_advice_buried_in_a_long_message_is_found_and_located(scanner: TopicScanner) -> None:
    padding = "I ordered a blue tent and two sleeping bags last month for our family trip. " * 8
    advice = "Also, what dose of ibuprofen should I take for my sprained ankle?"
    text = padding + advice + " " + padding
    result = scanner.scan(text)
    assert result.score >= DEFAULT_THRESHOLD
    (span,) = result.spans
    assert span.label == "topic:medical-advice"
    assert span.start <= text.index(advice) + 10 and span.end >= text.index(advice) + 20
    assert scanner.scan(padding).score < DEFAULT_THRESHOLD


def test_each_window_of_a_long_text_scores_as_its_tokens_alone(scanner: TopicScanner) -> None:
    """The window-by-token product (and its n-gram pairs) equals scoring each window by itself."""
    text = " ".join(
        ["My order 4821 arrived late and the box was torn."] * 6
        + ["Can I sue the courier, and what dose of ibuprofen helps my sprained wrist?"]
        + ["Thanks for the quick refund on the fleece."] * 4
    )
    ids, _ = scanner._model.tokens(text)
    assert len(ids) > 4 * WINDOW_TOKENS
    # Lengths on and around the block boundaries, and the whole text.
    for n in (WINDOW_TOKENS + 1, 2 * WINDOW_TOKENS, 2 * WINDOW_TOKENS + 7, 101, len(ids)):
        scores, starts, ends = scanner.window_scores(ids[:n])
        assert len(starts) >= 2
        for row, (s, e) in enumerate(zip(starts, ends, strict=True)):
            alone, _, _ = scanner.window_scores(ids[s:e])
            np.testing.assert_allclose(scores[row], alone[0], rtol=1e-4, atol=1e-6)


def test_windows_cover_every_token() -> None:
    assert token_windows(10) == [0]
    starts = token_windows(200)
    assert starts[0] == 0 and starts[-1] == 200 - WINDOW_TOKENS
    assert all(0 < b - a <= STRIDE_TOKENS for a, b in itertools.pairwise(starts))  # no gaps


def test_scanner_contract(scanner: TopicScanner) -> None:
    assert isinstance(scanner, Scanner)
    assert scanner.scan("").score == 0.0
    assert scanner.scan("   ").score == 0.0
    text = "Can I sue the courier for losing my parcel?"
    assert scanner.scan(text) == scanner.scan(text)
    with pytest.raises(InvalidRequest):
        scanner.scan(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        TopicScanner([])
    assert load_model() is load_model()


def test_topic_is_a_registered_scanner_and_the_example_compiles() -> None:
    charter = load_charter(EXAMPLE).require()
    control = next(c for c in charter.controls if c.id == "advice-topics")
    assert "topic" in SCANNERS
    assert gaps(control.settings) == []
    engine = Engine(charter)
    evaluation = engine.evaluate(
        RequestContext(Stage.INPUT, text="Should I hire a lawyer to sue you over my injury?")
    )
    (verdict,) = [v for v in evaluation.verdicts if v.control_id == "advice-topics"]
    assert verdict.action is Action.BLOCK
    assert verdict.decision_ids == ("no-legal-medical-advice",)
    # Shadow in the example: recorded, never acted on.
    assert not verdict.enforced and evaluation.action is Action.ALLOW
