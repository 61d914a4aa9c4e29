"""Bad standards fail `charter check`, each finding at the line and column of the value at fault."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from charter.document.findings import Finding
from charter.document.loader import load_charter, load_charter_text
from tests.standards.conftest import CONTROLS, EXAMPLE, HEAD, TAIL, TODAY


def check(controls: str, *, file: str = "c.yaml") -> tuple[str, list[Finding]]:
    text = HEAD + controls + TAIL
    return text, load_charter_text(text, file=file, today=TODAY).errors


def at(text: str, needle: str, occurrence: int = 0) -> tuple[int, int]:
    """The 1-based line and column where ``needle`` starts (its ``occurrence``-th time)."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, [f.render() for f in findings]
    return matching[0]


def replace_control(control_id: str, new: str) -> str:
    """CONTROLS with one control's block replaced by ``new``."""
    start = CONTROLS.index(f"  - id: {control_id}\n")
    end = CONTROLS.find("  - id: ", start + 1)
    return CONTROLS[:start] + new + (CONTROLS[end:] if end != -1 else "")


def test_the_test_charter_and_the_example_pass() -> None:
    assert check(CONTROLS)[1] == []
    loaded = load_charter(EXAMPLE, today=TODAY)
    assert loaded.errors == [], [f.render() for f in loaded.errors]


def test_an_empty_standard_fails_at_its_settings() -> None:
    controls = replace_control(
        "org-default",
        """\
  - id: org-default
    kind: standard
    serves: [quality]
    settings:
      mandatory: false
""",
    )
    text, errors = check(controls)
    finding = only(errors, "invalid-value")
    assert "empty standard" in finding.message
    assert (finding.line, finding.column) == at(text, "mandatory: false")


def test_an_empty_instruction_fails_where_it_is_written() -> None:
    controls = CONTROLS.replace("- text: ORG-DEFAULT be formal.", "- text: '   '")
    text, errors = check(controls)
    finding = only(errors, "invalid-value")
    assert "instructions" in finding.path
    assert (finding.line, finding.column) == at(text, "'   '")


def test_unknown_scope_principal_model_and_owner() -> None:
    controls = CONTROLS.replace(
        "scope: {models: [big]}", "scope: {principals: [bott], models: [bigg]}"
    ).replace("owner: support\n      replaces", "owner: suport\n      replaces")
    text, errors = check(controls)
    codes = sorted((f.code, f.line, f.column) for f in errors)
    assert ("unknown-id", *at(text, "bott]")) in codes
    assert ("unknown-id", *at(text, "bigg]")) in codes
    assert ("unknown-id", *at(text, "suport")) in codes
    hints = " ".join(f.hint or "" for f in errors)
    assert "did you mean `bot`?" in hints and "did you mean `big`?" in hints
    assert "did you mean `support`?" in hints


def test_a_user_cannot_own_a_standard() -> None:
    text, errors = check(CONTROLS.replace("owner: bot", "owner: ann"))
    finding = only(errors, "invalid-value")
    assert "user `ann`" in finding.message
    line, column = at(text, "owner: ann")
    assert (finding.line, finding.column) == (line, column + len("owner: "))


@pytest.mark.parametrize(
    ("controls", "needle", "words"),
    [
        # Replacing a mandatory standard.
        (
            CONTROLS.replace("replaces: [org-default]", "replaces: [org-voice]"),
            "org-voice]",
            "mandatory standard cannot be replaced",
        ),
        # Replacing itself.
        (
            CONTROLS.replace("replaces: [org-default]", "replaces: [team-default]"),
            "team-default]",
            "replaces itself",
        ),
        # A broader standard replacing a narrower one.
        (
            CONTROLS.replace(
                "        - text: ORG-DEFAULT be formal.",
                "        - text: ORG-DEFAULT be formal.\n      replaces: [app-default]",
            ),
            "app-default]",
            "broader standard cannot replace a narrower one",
        ),
        # A team standard reaching outside its team.
        (
            CONTROLS.replace(
                "      owner: support\n      mandatory: true",
                "      owner: support\n      mandatory: true\n"
                "      scope: {principals: [sales-app]}",
            ),
            "sales-app]",
            "not part of `support`",
        ),
        # A replacement that can never happen: no request is in both scopes.
        (
            CONTROLS.replace(
                "      instructions:\n        - text: ORG-DEFAULT be formal.",
                "      scope: {principals: [sales]}\n"
                "      instructions:\n        - text: ORG-DEFAULT be formal.",
            ),
            "org-default]",
            "never happens",
        ),
    ],
)
def test_conflicting_precedence_fails_at_the_reference(
    controls: str, needle: str, words: str
) -> None:
    text, errors = check(controls)
    finding = only(errors, "precedence-conflict")
    assert words in finding.message
    assert (finding.line, finding.column) == at(text, needle)


def test_a_replacement_cycle_fails() -> None:
    controls = CONTROLS.replace(
        "        - text: ORG-DEFAULT be formal.",
        "        - text: ORG-DEFAULT be formal.\n      replaces: [team-default]",
    ).replace("owner: support\n      replaces: [org-default]", "replaces: [org-default]")
    text, errors = check(controls)
    cycles = [f for f in errors if "replace each other" in f.message]
    assert sorted((f.line, f.column) for f in cycles) == sorted(
        [at(text, "team-default]"), at(text, "org-default]")]
    )


def test_two_standards_replacing_the_same_one_for_the_same_requests_fail() -> None:
    second = """\
  - id: app-default
    kind: standard
    serves: [quality]
    settings:
      owner: bot
      replaces: [org-default]
      instructions:
        - text: APP-DEFAULT.
"""
    text, errors = check(replace_control("app-default", second))
    finding = only(errors, "precedence-conflict")
    assert "ambiguous" in finding.message
    assert (finding.line, finding.column) == at(text, "org-default]", 1)


def test_a_required_element_that_a_banned_phrasing_forbids_fails() -> None:
    controls = CONTROLS.replace(
        'text: "Policy: https://acme.example/policy"',
        'text: "We guarantee a refund: https://acme.example/policy"',
    )
    text, errors = check(controls)
    finding = only(errors, "standards-conflict")
    assert "`promises` of standard `org-voice`" in finding.message
    assert (finding.line, finding.column) == at(text, '"We guarantee')


def test_bad_patterns_fail_where_they_are_written() -> None:
    text, errors = check(CONTROLS.replace("present: 'acme\\.example/policy'", "present: '(['"))
    finding = only(errors, "invalid-value")
    assert "not a valid regular expression" in finding.message
    assert (finding.line, finding.column) == at(text, "'(['")


def test_instruction_files_missing_empty_or_not_the_pinned_content(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("Be kind.\n")
    (tmp_path / "empty.md").write_text("  \n")
    digest = hashlib.sha256(b"something else").hexdigest()
    controls = CONTROLS.replace(
        "        - text: ORG-DEFAULT be formal.",
        "        - file: ok.md\n"
        "        - file: missing.md\n"
        "        - file: empty.md\n"
        f"        - {{file: ok.md, sha256: {digest}}}",
    )
    text = HEAD + controls + TAIL
    (tmp_path / "charter.yaml").write_text(text)
    errors = load_charter(tmp_path / "charter.yaml", today=TODAY).errors
    found = sorted((f.line, f.column, f.message) for f in errors)
    assert [(line, col) for line, col, _ in found] == sorted(
        [at(text, "missing.md"), at(text, "empty.md"), at(text, "ok.md", 1)]
    )
    messages = " ".join(m for _, _, m in found)
    assert "cannot read instructions file missing.md" in messages
    assert "empty.md is empty" in messages
    assert "not the pinned content" in messages


def test_a_pin_with_text_is_refused() -> None:
    digest = "0" * 64
    controls = CONTROLS.replace(
        "- text: ORG-DEFAULT be formal.", f"- {{text: formal, sha256: '{digest}'}}"
    )
    _, errors = check(controls)
    assert "sha256 pins a file" in only(errors, "invalid-value").message
