"""A small charter with one standard at each level, and the example's standards alone."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from charter.document.loader import load_charter, load_charter_text
from charter.document.model import Charter, StandardControl

TODAY = dt.date(2026, 1, 15)
EXAMPLE = Path("examples/support-desk/charter.yaml")
EXAMPLE_DIR = EXAMPLE.parent

HEAD = """\
format: 1
organization: Acme
decisions:
  - id: quality
    statement: Answers meet the bar.
    owner: head-of-support
    risk: medium
    review_by: 2027-01-01
    enforced_by: [org-voice, org-default, team-default, app-default, team-rules, shadowed]
controls:
"""

CONTROLS = """\
  - id: org-voice
    kind: standard
    serves: [quality]
    settings:
      mandatory: true
      instructions:
        - text: ORG-VOICE never promise outcomes.
      banned:
        - id: promises
          phrases: [we guarantee, refund]
          message: No promises, sorry.
        - id: blame
          phrases: [your fault]
          action: flag
  - id: org-default
    kind: standard
    serves: [quality]
    settings:
      instructions:
        - text: ORG-DEFAULT be formal.
  - id: team-default
    kind: standard
    serves: [quality]
    settings:
      owner: support
      replaces: [org-default]
      instructions:
        - text: TEAM-DEFAULT be warm.
  - id: app-default
    kind: standard
    serves: [quality]
    settings:
      owner: bot
      scope: {models: [big]}
      instructions:
        - text: APP-DEFAULT use bullet points.
  - id: team-rules
    kind: standard
    serves: [quality]
    settings:
      owner: support
      mandatory: true
      instructions:
        - text: TEAM-RULES hand off when stuck.
      required:
        - id: disclosure
          text: "Policy: https://acme.example/policy"
          present: 'acme\\.example/policy'
          when: {answer_mentions: [money back], question_mentions: [money back]}
        - id: handoff
          text: "Talk to a person: https://acme.example/help"
          when: {answer_pattern: "can(no|')t help", description: when you cannot help}
          action: flag
        - id: sign-off
          text: "-- Acme support"
          when: {answer_mentions: [legal]}
          action: block
          message: Please ask our legal team.
  - id: shadowed
    kind: standard
    serves: [quality]
    mode: shadow
    settings:
      instructions:
        - text: SHADOWED trial wording.
      required:
        - id: footer
          text: "Footer line."
"""

TAIL = """\
principals:
  - {id: support, kind: team}
  - {id: bot, kind: app, member_of: support}
  - {id: ann, kind: user, member_of: bot}
  - {id: sales, kind: team}
  - {id: sales-app, kind: app, member_of: sales}
providers:
  - id: sim
    kind: simulated
    models:
      - {name: small, price: {input_per_mtok: 1, output_per_mtok: 2}}
      - {name: big, price: {input_per_mtok: 1, output_per_mtok: 2}}
"""

TEXT = HEAD + CONTROLS + TAIL
BOT = ("bot", "support")
ANN = ("ann", "bot", "support")
SALES = ("sales-app", "sales")


def load(text: str) -> Charter:
    loaded = load_charter_text(textwrap.dedent(text), file="c.yaml", today=TODAY)
    assert loaded.errors == [], [f.render() for f in loaded.errors]
    return loaded.require()


@pytest.fixture(scope="session")
def acme() -> Charter:
    return load(TEXT)


@pytest.fixture(scope="session")
def example() -> Charter:
    return load_charter(EXAMPLE, today=TODAY).require()


@pytest.fixture(scope="session")
def example_standards(example: Charter) -> Charter:
    """The example with only its standards, so an engine over it builds in milliseconds."""
    controls = [c for c in example.controls if isinstance(c, StandardControl)]
    return example.model_copy(update={"controls": controls})
