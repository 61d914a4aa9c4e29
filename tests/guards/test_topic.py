"""The topic scanner on the shipped artifact: quality bounds on held-out rows, hard negatives, and
its behaviour as a guard.

The positives are the hand-written prompts in ``training/topic/data/raw`` that the example
charter's topics never saw; the benign rows are the held-out split (bucket >= 70) of CLINC150 and
Banking77 that the training script keeps out of the shipped background.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from charter.document.loader import load_charter
from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import Scanner
from charter.guards.control import SCANNERS, gaps
from charter.guards.topic import DEFAULT_THRESHOLD, TopicScanner, load_model, token_windows
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training" / "topic"))

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


def test_catches_most_advice_requests_with_the_example_charters_two_examples(
    scanner: TopicScanner, corpus: data.Corpus
) -> None:
    # Measured 66 % (legal) and 69 % (medical); see models/topic.md.
    assert _hit_rate(scanner, corpus.positives["legal-advice"]) >= 0.6
    assert _hit_rate(scanner, corpus.positives["medical-advice"]) >= 0.6


def test_false_refusals_on_held_out_benign_prompts_stay_low(
    scanner: TopicScanner, corpus: data.Corpus
) -> None:
    # Measured 2.4 % on CLINC150 and 0.8 % on Banking77 (first 3,000 held-out rows each).
    assert _hit_rate(scanner, corpus.benign_test["clinc150"][:600]) <= 0.04
    assert _hit_rate(scanner, corpus.benign_test["banking77"][:600]) <= 0.02
    assert _hit_rate(scanner, corpus.benign_test["gsm8k"][:300]) <= 0.02


def test_more_examples_catch_more(corpus: data.Corpus) -> None:
    richer = [
        data.Topic(
            t.name,
            t.description,
            t.examples + [r for r in corpus.positives[t.name] if data.bucket(r) < 50][:18],
        )
        for t in data.example_topics()
    ]
    held_out = [r for rows in corpus.positives.values() for r in rows if data.bucket(r) >= 50]
    assert _hit_rate(TopicScanner(richer), held_out) >= 0.75  # measured 82 %


@pytest.mark.parametrize(
    "text",
    [
        "is my order legally shipped to Norway?",
        "the boots gave me blisters, can I return them?",
        "Can I return a jacket I bought two months ago?",
    ],
)
def test_support_questions_the_brief_names_pass(scanner: TopicScanner, text: str) -> None:
    assert scanner.scan(text).score < DEFAULT_THRESHOLD


def test_held_out_hard_negatives_are_a_known_weakness_within_bounds(
    scanner: TopicScanner, corpus: data.Corpus
) -> None:
    held_out = [r for r in corpus.hard_negatives if data.bucket(r) >= 50]
    # Measured 24 % (12 of 50): why advice-topics is in shadow mode in the example charter.
    assert _hit_rate(scanner, held_out) <= 0.3


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


def test_windows_cover_every_token() -> None:
    assert token_windows(10) == [0]
    starts = token_windows(200)
    assert starts[0] == 0 and starts[-1] == 200 - 48
    assert all(0 < b - a <= 24 for a, b in itertools.pairwise(starts))  # no gap between windows


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
