"""Signed checkpoints and the Ed25519 key files behind them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from charter.audit.checkpoint import (
    Checkpoint,
    CheckpointInvalid,
    SigningKey,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_from_b64,
    public_key_path,
    public_key_to_b64,
    sign_checkpoint,
    verify_checkpoint,
)
from charter.errors import ConfigurationError, Conflict, InvalidRequest

ROOT = hashlib.sha256(b"some root").digest()
TIME = "2025-03-01T09:30:00.000000Z"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def _checkpoint(key: SigningKey, **kw: object) -> Checkpoint:
    args: dict[str, object] = {"log_id": "acme-prod", "tree_size": 10, "root_hash": ROOT}
    args.update(kw)
    return sign_checkpoint(key, timestamp=TIME, **args)  # type: ignore[arg-type]


def test_a_signed_checkpoint_verifies_and_round_trips_through_json(key: SigningKey) -> None:
    cp = _checkpoint(key)
    verify_checkpoint(cp, key.public_key)
    parsed = Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict())))
    assert parsed == cp
    verify_checkpoint(parsed, [key.public_key])
    assert cp.key_id == key.key_id


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 11},
        {"root_hash": hashlib.sha256(b"other root").digest()},
        {"timestamp": "2025-03-01T09:30:01.000000Z"},
        {"log_id": "acme-staging"},
    ],
)
def test_an_altered_checkpoint_is_rejected_as_forged(
    key: SigningKey, change: dict[str, object]
) -> None:
    forged = dataclasses.replace(_checkpoint(key), **change)  # type: ignore[arg-type]
    with pytest.raises(CheckpointInvalid, match="forged or altered") as info:
        verify_checkpoint(forged, key.public_key)
    assert info.value.reason == "bad_signature"


def test_a_flipped_signature_bit_is_rejected(key: SigningKey) -> None:
    cp = _checkpoint(key)
    bad = dataclasses.replace(cp, signature=bytes([cp.signature[0] ^ 1]) + cp.signature[1:])
    with pytest.raises(CheckpointInvalid, match="forged"):
        verify_checkpoint(bad, key.public_key)


def test_a_checkpoint_signed_by_another_key_is_rejected(key: SigningKey) -> None:
    mallory = SigningKey.generate()
    with pytest.raises(CheckpointInvalid, match="not a trusted key") as info:
        verify_checkpoint(_checkpoint(mallory), key.public_key)
    assert info.value.reason == "unknown_key"
    # Claiming the trusted key's id does not help: the signature does not verify under it.
    impostor = dataclasses.replace(_checkpoint(mallory), key_id=key.key_id)
    with pytest.raises(CheckpointInvalid, match="forged") as info:
        verify_checkpoint(impostor, key.public_key)
    assert info.value.reason == "bad_signature"


def test_rotation_a_verifier_holds_old_and_new_keys(key: SigningKey) -> None:
    new_key = SigningKey.generate()
    old_cp, new_cp = _checkpoint(key), _checkpoint(new_key, tree_size=20)
    trusted = [key.public_key, new_key.public_key]
    verify_checkpoint(old_cp, trusted)
    verify_checkpoint(new_cp, trusted)
    with pytest.raises(CheckpointInvalid, match="not a trusted key"):
        verify_checkpoint(old_cp, new_key.public_key)


def test_key_id_is_the_first_8_bytes_of_sha256_of_the_raw_public_key(key: SigningKey) -> None:
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key.public_key) == hashlib.sha256(raw).hexdigest()[:16]
    assert key_id(public_key_from_b64(public_key_to_b64(key.public_key))) == key.key_id
    assert "PRIVATE" not in repr(key) and key.key_id in repr(key)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tree_size", -1, "tree_size"),
        ("root_hash", "abcd", "root_hash"),
        ("signature", "not base64!", "base64"),
        ("timestamp", "yesterday", "RFC 3339"),
        ("format", "other/v9", "format"),
    ],
)
def test_malformed_checkpoints_say_which_field(
    key: SigningKey, field: str, value: object, message: str
) -> None:
    data = _checkpoint(key).to_dict()
    data[field] = value
    with pytest.raises(CheckpointInvalid, match=message):
        Checkpoint.from_dict(data)


def test_generated_key_files_permissions_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.pem"
    key = generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_path(path) == tmp_path / "keys" / "audit-signing.pem.pub"
    assert load_signing_key(path).key_id == key.key_id
    assert key_id(load_public_key(public_key_path(path))) == key.key_id
    cp = _checkpoint(load_signing_key(path))
    verify_checkpoint(cp, load_public_key(public_key_path(path)))


def test_generating_over_an_existing_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    generate_signing_key(path)
    before = path.read_bytes()
    with pytest.raises(Conflict, match="refusing to overwrite"):
        generate_signing_key(path)
    assert path.read_bytes() == before


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    generate_signing_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_signing_key(path)


def test_an_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    key = generate_signing_key(path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_signing_key(path, passphrase=b"correct horse").key_id == key.key_id
    with pytest.raises(ConfigurationError, match="passphrase"):
        load_signing_key(path)
    with pytest.raises(ConfigurationError, match="passphrase"):
        load_signing_key(path, passphrase=b"wrong")


def test_missing_key_files_say_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="generate_signing_key"):
        load_signing_key(tmp_path / "nope.pem")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_public_key(tmp_path / "nope.pem.pub")
    with pytest.raises(InvalidRequest, match="Ed25519"):
        public_key_from_b64("AAAA")
