"""The `charter` command end to end through click's runner (the library underneath is real)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import yaml
from click.testing import CliRunner

from charter.cli import main
from charter.settings import SETTINGS, resolve, settings_markdown

EXAMPLE = "examples/support-desk/charter.yaml"


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    runner = CliRunner(env={"COLUMNS": "300"})
    result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.output


def test_check_passes_the_example() -> None:
    code, out = run("check", EXAMPLE)
    assert code == 0, out
    assert "ok" in out and "decisions" in out


def test_check_lists_errors_with_positions_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = Path(EXAMPLE).read_text().replace("    owner: head-of-support\n", "    ownr: x\n", 1)
    bad.write_text(text)
    code, out = run("check", str(bad))
    assert code == 1
    assert f"{bad}:22:5: error[unknown-key]: unknown key `ownr`" in out
    assert f"{bad}:18:5: error[missing-key]: missing required key `owner`" in out
    assert "did you mean `owner`" in out


def test_check_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(EXAMPLE).read_text().replace("risk: critical", "risk: dire", 1))
    code, out = run("check", str(bad), "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    (finding,) = [f for f in report["findings"] if f["severity"] == "error"]
    assert finding["code"] == "invalid-value" and finding["line"] == 32


def test_check_strict_fails_on_warnings(tmp_path: Path) -> None:
    assert run("check", EXAMPLE, "--strict")[0] == 0  # the example has no warnings
    overdue = tmp_path / "overdue.yaml"
    overdue.write_text(
        Path(EXAMPLE).read_text().replace("review_by: 2027-06-30", "review_by: 2020-06-30", 1)
    )
    assert run("check", str(overdue))[0] == 0  # a warning alone does not fail check...
    assert run("check", str(overdue), "--strict")[0] == 1  # ...unless --strict


def test_explain_shows_every_decision_with_its_controls() -> None:
    code, out = run("explain", EXAMPLE, "--format", "markdown")
    assert code == 0
    charter = yaml.safe_load(Path(EXAMPLE).read_text())
    for decision in charter["decisions"]:
        row = next(line for line in out.splitlines() if f"`{decision['id']}`" in line)
        for control in decision["enforced_by"]:
            assert control in row, (decision["id"], control)


def test_explain_table_and_mermaid() -> None:
    code, out = run("explain", EXAMPLE)
    assert code == 0 and "refund-limits" in out and "model-allowlist" in out
    code, out = run("explain", EXAMPLE, "--format", "mermaid")
    assert code == 0 and out.startswith("flowchart LR")
    assert "d_refund_limits --> c_refund_policy" in out


def test_explain_shows_uncovered_and_orphans(tmp_path: Path) -> None:
    text = (
        Path(EXAMPLE)
        .read_text()
        .replace("    enforced_by: [model-allowlist]\n", "")
        .replace("    serves: [approved-models]\n", "")
    )
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, out = run("explain", str(path), "--format", "markdown")
    assert code == 0
    assert "**Uncovered decisions:** approved-models" in out
    assert "**Orphan controls:** model-allowlist" in out


def test_version_is_stable(tmp_path: Path) -> None:
    code, out = run("version", EXAMPLE)
    assert code == 0 and out.startswith("sha256:")
    copy = tmp_path / "c.yaml"
    copy.write_text(
        "# reformatted\n" + Path(EXAMPLE).read_text().replace("format: 1", "format:  1")
    )
    assert run("version", str(copy))[1] == out
    assert len(run("version", EXAMPLE, "--short")[1].strip()) == 12


def test_version_of_invalid_charter_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: 1\n")
    result = CliRunner().invoke(main, ["version", str(bad)])
    assert result.exit_code == 3
    assert "charter is invalid" in result.output and "Traceback" not in result.output


def test_schema_validates_the_example_and_rejects_typos(tmp_path: Path) -> None:
    out_file = tmp_path / "schema.json"
    assert run("schema", "-o", str(out_file))[0] == 0
    schema = json.loads(out_file.read_text())
    example = json.loads(json.dumps(yaml.safe_load(Path(EXAMPLE).read_text()), default=str))
    # PyYAML (YAML 1.1) reads `off` as False; the schema is for editors, which use YAML 1.2.
    for control in example["controls"]:
        if control.get("mode") is False:
            control["mode"] = "off"
    jsonschema.validate(example, schema)
    example["decisions"][0]["reveiw_by"] = "2027-01-01"
    try:
        jsonschema.validate(example, schema)
    except jsonschema.ValidationError as exc:
        assert "reveiw_by" in exc.message
    else:
        raise AssertionError("the schema accepted an unknown key")


def test_keys_hash() -> None:
    code, out = run("keys", "hash", input="sk-demo-support-bot\n")
    assert code == 0
    assert out.strip() == hashlib.sha256(b"sk-demo-support-bot").hexdigest()
    assert out.strip() in Path(EXAMPLE).read_text()


def test_settings_doc_is_in_step() -> None:
    """A setting added to the table but not to docs/settings.md fails here."""
    assert Path("docs/settings.md").read_text() == settings_markdown()


def test_settings_precedence() -> None:
    env = {"CHARTER_LOG_LEVEL": "debug", "CHARTER_DATABASE": "sqlite:///x.db"}
    settings = resolve({"database": "postgresql://h/db"}, env)
    assert settings.database == "postgresql://h/db"  # flag beats environment
    assert settings.log_level == "debug"  # environment beats default
    assert resolve({}, {}).charter == "charter.yaml"


def test_bad_setting_value_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["settings"], env={"CHARTER_LOG_LEVEL": "loud"})
    assert result.exit_code == 3
    assert "CHARTER_LOG_LEVEL='loud' is not one of" in result.output


def test_every_setting_listed_by_the_command() -> None:
    code, out = run("settings")
    assert code == 0
    for setting in SETTINGS:
        assert setting.env in out


def test_every_command_has_an_example_in_its_help() -> None:
    def walk(group: object, prefix: list[str]) -> list[list[str]]:
        import click

        found = []
        assert isinstance(group, click.Group)
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                found += walk(cmd, [*prefix, name])
            else:
                found.append([*prefix, name])
        return found

    for path in walk(main, []):
        code, out = run(*path, "--help")
        assert code == 0 and "Example" in out, path
