"""Every request through the gateway lands in the audit log, provably; tampering is caught."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from charter.audit.checkpoint import load_public_key
from charter.audit.log import stored_checkpoints, stored_leaf_bytes
from charter.audit.merkle import leaf_hash, verify_inclusion
from charter.audit.verify import verify_log
from charter.cli import main
from charter.gateway.factory import Services
from tests.gateway.conftest import MARKETING_KEY, SUPPORT_KEY

pytestmark = pytest.mark.anyio

CHAT = {
    "model": "sim-small",
    "messages": [{"role": "user", "content": "Mail me at jane.doe@example.com"}],
}


async def traffic(client: httpx.AsyncClient) -> None:
    ok = await client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {SUPPORT_KEY}"}
    )
    assert ok.status_code == 200
    denied = await client.post(
        "/v1/chat/completions",
        json={**CHAT, "model": "sim-large"},
        headers={"authorization": f"Bearer {MARKETING_KEY}"},
    )
    assert denied.status_code == 403


async def test_each_request_is_a_committed_record_before_the_answer(
    client: httpx.AsyncClient, services: Services
) -> None:
    await traffic(client)
    # Committed before the responses were released: no waiting, no flushing.
    records = [json.loads(b) for b in stored_leaf_bytes(services.store)]
    assert [r["index"] for r in records] == [0, 1]
    answered, refused = records
    assert answered["principal"] == "support-bot" and answered["action"] == "redact"
    assert answered["charter_version"] == services.gateway.version
    # The example keeps content redacted: the email never lands in the log.
    assert "jane.doe@example.com" not in json.dumps(answered)
    assert "<EMAIL_ADDRESS_1>" in answered["content"][0]["value"]
    assert refused["action"] == "block" and refused["decision_ids"] == ["approved-models"]
    assert refused["details"]["status"] == 403


async def test_records_are_provable_and_verifiable(
    client: httpx.AsyncClient, services: Services, tmp_path: Path
) -> None:
    await traffic(client)
    checkpoint = services.audit.checkpoint()
    leaves = stored_leaf_bytes(services.store)
    public = services.audit.keys.signing.public_key
    report = verify_log(leaves, stored_checkpoints(services.store), public)
    assert report.ok, report.summary()

    url = f"sqlite:///{tmp_path}/charter.db"
    state = str(tmp_path / "state")
    runner = CliRunner(env={"COLUMNS": "200"})
    proof_out = runner.invoke(main, ["audit", "prove", "1", "--database", url])
    assert proof_out.exit_code == 0, proof_out.output
    proof = json.loads(proof_out.output)
    verify_inclusion(
        leaf_hash(leaves[1]),
        1,
        checkpoint.tree_size,
        [bytes.fromhex(h) for h in proof["inclusion_proof"]],
        checkpoint.root_hash,
    )

    ok = runner.invoke(main, ["audit", "verify", "--database", url, "--data-dir", state])
    assert ok.exit_code == 0 and "ok" in ok.output

    bundle = tmp_path / "bundle.json"
    exported = runner.invoke(
        main, ["audit", "export", "-o", str(bundle), "--database", url, "--data-dir", state]
    )
    assert exported.exit_code == 0
    offline = runner.invoke(
        main,
        [
            "audit",
            "verify-bundle",
            str(bundle),
            "--public-key",
            f"{state}/audit-signing-key.pem.pub",
        ],
    )
    assert offline.exit_code == 0, offline.output
    assert load_public_key(f"{state}/audit-signing-key.pem.pub") is not None

    found = runner.invoke(
        main, ["audit", "search", "--decision", "approved-models", "--database", url]
    )
    assert "marketing-writer" in found.output

    # Tamper with a stored record: the CLI's verify fails and says so.
    with sqlite3.connect(f"{tmp_path}/charter.db") as conn:
        conn.execute(
            "UPDATE audit_leaves SET record_json = replace(record_json, 'block', "
            "'allow') WHERE seq = 1"
        )
    tampered = runner.invoke(main, ["audit", "verify", "--database", url, "--data-dir", state])
    assert tampered.exit_code == 1 and "FAILED" in tampered.output
