"""Evidence gates on the example: it passes; breaking a guard fails it, naming the gate and the
decision; runs and overrides are audit records that decide whether a version may be enforced."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from charter.document.loader import load_charter
from charter.document.version import charter_version
from charter.errors import ConfigurationError, PermissionDenied
from charter.evals.gate import gate_status, require_enforceable
from charter.storage import open_store
from tests.evals.conftest import EXAMPLE, charter_copy, cli

INJECTION_ON = """  - id: input-injection
    kind: guard
    serves: [no-jailbreaks]
    settings:"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_the_example_passes_its_gate_and_writes_every_output(tmp_path: Path) -> None:
    code, out = invoke(
        "eval",
        "--charter",
        str(EXAMPLE),
        "--json",
        str(tmp_path / "run.json"),
        "--junit",
        str(tmp_path / "run.xml"),
        "--html",
        str(tmp_path / "run.html"),
    )
    assert code == 0, out
    assert "gate passed (support-evals)" in out
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["gate"]["passed"]
    assert data["gate"]["baseline_run_id"] is not None  # compared with the pinned baseline
    overall = data["summary"]["overall"]
    assert overall["catch_rate"] == 1.0 and overall["false_refusal_rate"] == 0.0
    # Decisions whose controls are all off are reported as such, never as passes.
    charter = load_charter(EXAMPLE).require()
    judging = {  # enforced controls that rule on requests (shadow ones only record)
        c.id for c in charter.controls if c.mode == "enforce" and c.kind not in ("audit", "monitor")
    }
    expected = {d.id for d in charter.decisions if not set(d.enforced_by) & judging}
    assert set(data["summary"]["unmeasured"]) == expected
    assert "everything-auditable" in expected  # audit and monitor controls judge no request
    root = ET.parse(tmp_path / "run.xml").getroot()
    cases = root.find("testsuite")
    assert cases is not None and int(cases.get("tests", 0)) == len(data["results"])
    assert int(cases.get("skipped", 0)) == sum(not r["measured"] for r in data["results"])
    assert "<svg" in (tmp_path / "run.html").read_text()


def test_injection_guard_switched_off_fails_against_the_baseline(tmp_path: Path) -> None:
    path = charter_copy(
        tmp_path, (INJECTION_ON, INJECTION_ON.replace("settings:", "mode: off\n    settings:"))
    )
    shutil.copy(EXAMPLE.parent / "evals" / "baseline.json", tmp_path / "evals" / "baseline.json")
    code, out = invoke("eval", "--charter", str(path))
    assert code == 1
    flat = " ".join(out.split())
    assert "gate failed: regression" in flat
    assert "decision no-jailbreaks was measured in the baseline run and is not now" in flat
    assert "eval gate failed: regression" in flat


def test_a_weakened_injection_guard_fails_the_attack_block_rate(tmp_path: Path) -> None:
    path = charter_copy(
        tmp_path,
        (
            INJECTION_ON + "\n      scanner: injection",
            INJECTION_ON + "\n      threshold: 1.0\n      scanner: injection",
        ),
    )
    code, out = invoke("eval", "--charter", str(path))
    flat = " ".join(out.split())
    assert code == 1, out
    assert "gate failed: attack_block_rate" in flat
    assert "no-jailbreaks 2/2 got through" in flat


def test_runs_and_overrides_are_audited_and_decide_enforceability(tmp_path: Path) -> None:
    weak = charter_copy(
        tmp_path,
        (
            INJECTION_ON + "\n      scanner: injection",
            INJECTION_ON + "\n      threshold: 1.0\n      scanner: injection",
        ),
    )
    database = f"sqlite:///{tmp_path}/charter.db"
    state = ["--database", database, "--data-dir", str(tmp_path / "state")]
    version = charter_version(load_charter(weak).require())

    code, _ = invoke("eval", "--charter", str(weak), "--record", *state)
    assert code == 1
    with open_store(database) as store:
        status = gate_status(store, version)
        assert status.state == "failed" and "attack_block_rate" in (status.reason or "")
        with pytest.raises(ConfigurationError, match="failed its eval gate"):
            require_enforceable(store, version)

    code, out = invoke(
        "eval",
        "--charter",
        str(weak),
        "--override",
        "--reason",
        "pen test next week",
        "--as",
        "ravi",
        *state,
    )
    assert code == 1 and "may not override" in out  # ravi is a reviewer, not owner or admin
    code, out = invoke(
        "eval",
        "--charter",
        str(weak),
        "--override",
        "--reason",
        "accepted until the fix",
        "--as",
        "alice",
        *state,
    )
    assert code == 0, out
    with open_store(database) as store:
        status = gate_status(store, version)
        assert status.state == "overridden" and status.reason == "accepted until the fix"
        assert require_enforceable(store, version).enforceable
        assert gate_status(store, "sha256:other").state == "none"


def test_override_without_a_failed_run_is_refused(tmp_path: Path) -> None:
    from charter.audit.log import AuditLog, open_keys
    from charter.evals.gate import record_override

    charter = load_charter(EXAMPLE).require()
    with open_store(f"sqlite:///{tmp_path}/c.db") as store:
        store.migrate()
        audit = AuditLog(store, open_keys(tmp_path / "state"))
        try:
            with pytest.raises(ConfigurationError, match="no failed gate"):
                record_override(audit, store, charter, "sha256:x", principal="alice", reason="r")
            with pytest.raises(PermissionDenied, match="not a principal"):
                record_override(audit, store, charter, "sha256:x", principal="eve", reason="r")
        finally:
            audit.close()
