"""`charter check` finds every kind of error the issue lists, at the right line and column."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from charter.document.loader import load_charter, load_charter_text

TODAY = dt.date(2026, 11, 22)

VALID = """\
format: 1
organization: Acme
decisions:
  - id: approved-models
    statement: Only approved models.
    owner: platform-lead
    risk: medium
    review_by: 2027-01-31
    enforced_by: [allowlist]
controls:
  - id: allowlist
    kind: route
    serves: [approved-models]
    settings:
      rules:
        - principals: [team-a]
          models: [m1]
principals:
  - id: team-a
    kind: team
providers:
  - id: sim
    kind: simulated
    models:
      - name: m1
        price: {input_per_mtok: 1, output_per_mtok: 2}
"""


def findings(text: str) -> list[tuple[str, int, int]]:
    loaded = load_charter_text(textwrap.dedent(text), file="c.yaml", today=TODAY)
    return [(f.code, f.line, f.column) for f in loaded.findings]


def test_valid_charter_has_no_findings() -> None:
    loaded = load_charter_text(VALID, file="c.yaml", today=TODAY)
    assert loaded.findings == []
    assert loaded.ok
    assert loaded.version.startswith("sha256:")


def test_example_support_desk_passes() -> None:
    loaded = load_charter("examples/support-desk/charter.yaml", today=TODAY)
    assert loaded.errors == [], [f.render() for f in loaded.errors]
    assert loaded.ok


def test_yaml_syntax_error_has_position() -> None:
    text = VALID.replace("    owner: platform-lead", "    owner: [platform-lead")
    codes = findings(text)
    assert len(codes) == 1
    code, line, _ = codes[0]
    assert code == "yaml-syntax"
    assert line in (6, 7)  # libyaml reports the token after the unclosed bracket


def test_unknown_key_suggests_the_right_one() -> None:
    text = VALID.replace("    risk: medium", "    risk: medium\n    reveiw_by: 2027-01-01")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    (unknown,) = [f for f in loaded.findings if f.code == "unknown-key"]
    assert (unknown.line, unknown.column) == (8, 5)
    assert "reveiw_by" in unknown.message
    assert unknown.hint is not None and "did you mean `review_by`" in unknown.hint


def test_unknown_key_in_nested_settings_suggests() -> None:
    text = VALID.replace("          models: [m1]", "          models: [m1]\n          modles: [m2]")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    (unknown,) = [f for f in loaded.findings if f.code == "unknown-key"]
    assert (unknown.line, unknown.column) == (18, 11)
    assert unknown.hint is not None and "did you mean `models`" in unknown.hint


def test_wrong_type_names_the_value() -> None:
    text = VALID.replace("input_per_mtok: 1,", "input_per_mtok: lots,")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    (wrong,) = loaded.errors
    assert wrong.code == "wrong-type"
    assert (wrong.line, wrong.column) == (26, 33)
    assert "'lots'" in wrong.message


def test_invalid_enum_value() -> None:
    text = VALID.replace("risk: medium", "risk: extreme")
    assert findings(text) == [("invalid-value", 7, 11)]


def test_unknown_control_kind_suggests() -> None:
    text = VALID.replace("kind: route", "kind: rout")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    bad = [f for f in loaded.errors if f.code == "invalid-value"]
    assert [(f.line, f.column) for f in bad] == [(12, 11)]
    assert bad[0].hint is not None and "did you mean `route`" in bad[0].hint


def test_missing_required_key_points_at_the_mapping() -> None:
    text = VALID.replace("    owner: platform-lead\n", "")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    (missing,) = loaded.errors
    assert missing.code == "missing-key" and "`owner`" in missing.message
    assert (missing.line, missing.column) == (4, 5)


def test_decision_with_no_control() -> None:
    text = VALID + textwrap.dedent("""\
    """)
    text = text.replace(
        "controls:",
        "  - id: bare\n    statement: s\n    owner: o\n    risk: low\n    review_by: 2027-01-01\n"
        "controls:",
    )
    assert ("uncovered-decision", 10, 5) in findings(text)


def test_control_with_no_decision() -> None:
    text = VALID.replace(
        "principals:\n  - id: team-a",
        "  - id: stray\n    kind: route\n    settings:\n      rules:\n"
        "        - {principals: ['*'], models: [m1]}\nprincipals:\n  - id: team-a",
    )
    assert ("orphan-control", 18, 5) in findings(text)


def test_unknown_ids_both_directions() -> None:
    text = VALID.replace("enforced_by: [allowlist]", "enforced_by: [allowlist, allowlst]")
    text = text.replace("serves: [approved-models]", "serves: [approved-models, aproved]")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    unknown = [(f.line, f.column, f.hint) for f in loaded.errors if f.code == "unknown-id"]
    assert unknown[0][:2] == (9, 30) and "did you mean `allowlist`" in str(unknown[0][2])
    assert unknown[1][:2] == (13, 31)


def test_duplicate_ids() -> None:
    text = VALID.replace("providers:", "  - id: team-a\n    kind: team\nproviders:")
    assert ("duplicate-id", 21, 9) in findings(text)


def test_duplicate_yaml_key() -> None:
    text = VALID.replace("    risk: medium", "    risk: medium\n    risk: high")
    assert ("duplicate-key", 8, 5) in findings(text)


def test_serves_and_enforced_by_disagree() -> None:
    text = VALID.replace(
        "controls:",
        "  - id: second\n    statement: s\n    owner: o\n    risk: low\n    review_by: 2027-01-01\n"
        "    enforced_by: [allowlist]\ncontrols:",
    )
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    (mismatch,) = [f for f in loaded.errors if f.code == "mapping-mismatch"]
    assert (mismatch.line, mismatch.column) == (15, 19)
    assert "serves of control `allowlist`" in str(mismatch.hint)


def test_review_date_in_the_past_is_a_warning() -> None:
    text = VALID.replace("review_by: 2027-01-31", "review_by: 2025-01-31")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    assert [(f.severity, f.code, f.line, f.column) for f in loaded.findings] == [
        ("warning", "review-overdue", 8, 16)
    ]
    assert loaded.ok  # a warning does not make the charter invalid


def test_unknown_principal_and_model_references() -> None:
    text = VALID.replace("principals: [team-a]", "principals: [team-b]").replace(
        "models: [m1]", "models: [m2]"
    )
    codes = findings(text)
    assert ("unknown-id", 16, 24) in codes
    assert ("unknown-id", 17, 20) in codes


def test_plain_text_key_is_refused_with_advice() -> None:
    text = VALID.replace(
        "    kind: team\n", "    kind: team\n    keys:\n      - id: k1\n        key: sk-live-123\n"
    )
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    hints = " ".join(str(f.hint) + f.message for f in loaded.errors)
    assert "never write a key in plain text" in hints


def test_unimplemented_setting_is_an_error_unless_off() -> None:
    extra = (
        "  - id: later\n    kind: guard\n    serves: [approved-models]\n"
        "    settings: {scanner: length, max_chars: 9, stages: [input]}\n"
    )
    text = VALID.replace("principals:\n  - id: team-a", extra + "principals:\n  - id: team-a")
    text = text.replace("enforced_by: [allowlist]", "enforced_by: [allowlist, later]")
    assert ("not-implemented", 21, 55) in findings(text)
    off = text.replace("    kind: guard\n", "    kind: guard\n    mode: off\n")
    assert [c for c in findings(off) if c[0] == "not-implemented"] == []


def test_every_error_is_listed_not_only_the_first() -> None:
    text = VALID.replace("risk: medium", "risk: extreme").replace("kind: route", "kind: rout")
    text = text.replace("owner: platform-lead", "ownr: platform-lead")
    codes = {c for c, _, _ in findings(text)}
    assert {"invalid-value", "unknown-key", "missing-key"} <= codes


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(text: str) -> None:
    (finding,) = load_charter_text(text, file="c.yaml").findings
    assert finding.code == "not-a-mapping" and finding.line == 1


def test_unreadable_file(tmp_path: object) -> None:
    loaded = load_charter("/nonexistent/charter.yaml")
    assert loaded.findings[0].code == "unreadable"


def test_no_norway_problem() -> None:
    """Pins: YAML 1.1 reads `off`/`no` as booleans, which turned `mode: off` into False."""
    text = VALID.replace("    kind: route\n", "    kind: route\n    mode: off\n")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    assert loaded.charter is not None and loaded.charter.controls[0].mode == "off"


TOPIC_GUARD = """\
  - id: advice
    kind: guard
    serves: [approved-models]
    settings:
      scanner: topic
      topics:
        - name: legal
          description: Requests for legal advice.
          examples: [Can I sue you?, "can I  SUE you?"]
          allowed_examples:
            - Where are your terms?
            - ""
        - name: legal
          description: Requests for medical advice.
          examples: [What dose should I take?]
          allowed_examples: [Can I sue you?, 3]
principals:"""


def _with_topic_guard() -> str:
    text = VALID.replace("    enforced_by: [allowlist]", "    enforced_by: [allowlist, advice]")
    return text.replace("\nprincipals:\n", "\n" + TOPIC_GUARD + "\n", 1)


def test_topic_phrases_that_contradict_or_repeat_are_found_where_they_are() -> None:
    loaded = load_charter_text(_with_topic_guard(), file="c.yaml", today=TODAY)
    got = {(f.code, f.severity, f.line, f.column) for f in loaded.findings}
    assert got == {
        ("duplicate-example", "warning", 26, 38),  # the same phrase, other case and spacing
        ("invalid-value", "error", 29, 15),  # an empty phrase
        ("duplicate-id", "error", 30, 17),  # two topics named `legal`
        ("conflicting-example", "error", 33, 30),  # refused by one topic, allowed by another
        ("wrong-type", "error", 33, 46),  # a phrase must be text
    }
    (conflict,) = [f for f in loaded.findings if f.code == "conflicting-example"]
    assert "`Can I sue you?`" in conflict.message and "topics[0].examples" in conflict.message
    assert conflict.hint is not None and "keep it in one list" in conflict.hint
    assert conflict.render().startswith("c.yaml:33:30: error[conflicting-example]")


def test_allowed_examples_are_optional_and_validated_as_phrases() -> None:
    text = _with_topic_guard()
    text = text.replace(
        '          examples: [Can I sue you?, "can I  SUE you?"]\n'
        "          allowed_examples:\n"
        "            - Where are your terms?\n"
        '            - ""\n',
        "          examples: [Can I sue you?]\n",
    )
    text = text.replace(
        "- name: legal\n          description: Requests for medical",
        "- name: medical\n          description: Requests for medical",
    )
    text = text.replace("[Can I sue you?, 3]", "[Where are your terms?]")
    loaded = load_charter_text(text, file="c.yaml", today=TODAY)
    assert loaded.findings == [], [f.render() for f in loaded.findings]
    (guard,) = [c for c in loaded.require().controls if c.id == "advice"]
    assert [t.allowed_examples for t in guard.settings.topics] == [[], ["Where are your terms?"]]
