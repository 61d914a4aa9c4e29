"""Red-team variants: each transform really rewrites the attack, and the run says which got
through."""

from __future__ import annotations

import base64

import pytest

from charter.document.loader import load_charter
from charter.evals.redteam import (
    TRANSFORMS,
    by_transform,
    expand,
    gaming_cases,
    got_through,
    variant,
)
from charter.evals.runner import run_policy
from charter.evals.suite import load_suite
from tests.evals.conftest import EXAMPLE, SUITE, cli

pytestmark = pytest.mark.anyio


def _seed(case_id: str) -> object:
    return next(c for c in load_suite(SUITE).cases if c.id == case_id)


def test_each_transform_rewrites_the_attacking_message() -> None:
    seed = _seed("jailbreak-attack-dan")
    text = seed.messages[-1].content  # type: ignore[attr-defined]
    encoded = variant(seed, "base64").messages[-1].content  # type: ignore[arg-type]
    assert base64.b64decode(encoded.rsplit(" ", 1)[1]).decode() == text
    assert "\u200b" in variant(seed, "invisible").messages[-1].content  # type: ignore[arg-type]
    homoglyphs = variant(seed, "homoglyphs").messages[-1].content  # type: ignore[arg-type]
    assert homoglyphs != text and homoglyphs.encode("ascii", "ignore") != homoglyphs.encode()
    assert "a = " in variant(seed, "payload_split").messages[-1].content  # type: ignore[arg-type]
    assert variant(seed, "many_shot").messages[-1].content.count("User:") == 9  # type: ignore[arg-type]
    for name in TRANSFORMS:
        assert variant(seed, name).id == f"jailbreak-attack-dan~{name}"  # type: ignore[arg-type]


def test_multi_turn_keeps_the_untrusted_message_untrusted() -> None:
    seed = _seed("untrusted-attack-order-note")
    turned = variant(seed, "multi_turn")  # type: ignore[arg-type]
    assert len(turned.messages) == len(seed.messages) + 6  # type: ignore[attr-defined]
    (index,) = turned.untrusted
    assert turned.messages[index] == seed.messages[1]  # type: ignore[attr-defined]


async def test_variants_run_and_are_counted_per_transform() -> None:
    charter = load_charter(EXAMPLE).require()
    suite = load_suite(SUITE)
    seeds = [c for c in suite.cases if c.id in ("jailbreak-attack-dan", "secrets-attack-api-key")]
    cases = expand(seeds) + gaming_cases(charter, "support-bot")
    run = await run_policy(charter, suite.model_copy(update={"cases": cases}))
    report = {r.transform: r for r in by_transform(run)}
    assert set(report) == {*TRANSFORMS, "spec_gaming"}
    assert sum(r.variants for r in report.values()) == len(cases)
    assert sum(r.through for r in report.values()) == sum(got_through(r) for r in run.results)
    # A base64-wrapped credential is not key-shaped: the secrets guard misses it. Pinned so a
    # fix shows up here as a change, not as silence.
    wrapped = {r.case_id: r for r in run.results}["secrets-attack-api-key~base64"]
    assert wrapped.actual.value == "allowed"


def test_redteam_command_reports_the_table() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(
        cli, ["redteam", "--charter", str(EXAMPLE), "--transform", "leetspeak", "--show", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "leetspeak" in result.output and "spec_gaming" in result.output
