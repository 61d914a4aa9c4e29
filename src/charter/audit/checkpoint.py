"""Signed checkpoints of the audit log (tree size, root, time) and the Ed25519 keys that sign them.

A checkpoint is the log's promise "these are my first N records"; anyone with the public key can
check it offline. Each checkpoint names the key id that signed it, so keys can be rotated and a
verifier can trust several public keys at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from charter.audit.canonical import canonical_json
from charter.audit.merkle import HASH_SIZE
from charter.audit.records import is_rfc3339_utc, utc_now
from charter.errors import ConfigurationError, Conflict, InvalidRequest

CHECKPOINT_FORMAT = "charter.audit.checkpoint/v1"
# Signatures cover this line plus the canonical body, so a checkpoint signature can never be
# replayed as a signature over anything else the same key might sign.
_SIGNING_CONTEXT = CHECKPOINT_FORMAT.encode() + b"\n"
_SIGNATURE_SIZE = 64
_CHECKPOINT_FIELDS = frozenset(
    {"format", "log_id", "tree_size", "root_hash", "timestamp", "key_id", "signature"}
)


class CheckpointInvalid(InvalidRequest):
    """A checkpoint is malformed, forged, or signed by a key the verifier does not trust.

    ``reason`` is ``"malformed"``, ``"unknown_key"`` or ``"bad_signature"``.
    """

    code = "invalid_checkpoint"

    def __init__(self, message: str, *, hint: str | None = None, reason: str = "malformed"):
        super().__init__(message, hint=hint, reason=reason)
        self.reason = reason


PublicKeys = Ed25519PublicKey | Iterable[Ed25519PublicKey] | Mapping[str, Ed25519PublicKey]


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id: the first 8 bytes of SHA-256 of the raw 32-byte public key, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def public_key_to_b64(public_key: Ed25519PublicKey) -> str:
    """The raw public key, base64: the compact form carried in export bundles."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Parse ``public_key_to_b64`` output; raises ``InvalidRequest`` on anything else."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            "not a base64 raw Ed25519 public key (32 bytes)",
            hint="pass the public key as written by generate_signing_key, or its raw base64",
        ) from exc


def keyring(public_keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id, from one key, several keys, or a mapping already by id."""
    if isinstance(public_keys, Ed25519PublicKey):
        keys: Iterable[Ed25519PublicKey] = [public_keys]
    elif isinstance(public_keys, Mapping):
        keys = public_keys.values()
    else:
        keys = public_keys
    ring: dict[str, Ed25519PublicKey] = {}
    for key in keys:
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidRequest(
                f"trusted keys must be Ed25519 public keys, got {type(key).__name__}",
                hint="load them with charter.audit.load_public_key(path)",
            )
        ring[key_id(key)] = key
    return ring


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key with its key id; the only object that can sign checkpoints."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key: all a verifier needs."""
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        """The key id checkpoints signed by this key carry."""
        return key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key held only in memory (tests, ephemeral logs); see ``generate_signing_key``."""
        return cls(Ed25519PrivateKey.generate())

    def __repr__(self) -> str:
        # Never print key material, even by accident in a log line.
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the log ``log_id`` had ``tree_size`` leaves with root ``root_hash``."""

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp: str
    key_id: str
    signature: bytes

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers: a context line, then canonical JSON of the body."""
        return _message(self.log_id, self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: hashes in hex, the signature in base64."""
        return {
            "format": CHECKPOINT_FORMAT,
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Parse the JSON form; raises ``CheckpointInvalid`` saying which field is wrong."""
        if not isinstance(data, Mapping) or set(data) != _CHECKPOINT_FIELDS:
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise CheckpointInvalid(
                f"a checkpoint has the keys {sorted(_CHECKPOINT_FIELDS)}, got {keys}"
            )
        if data["format"] != CHECKPOINT_FORMAT:
            raise CheckpointInvalid(
                f"checkpoint format {data['format']!r} is not {CHECKPOINT_FORMAT!r}"
            )
        try:
            root_hash = bytes.fromhex(data["root_hash"])
            signature = base64.b64decode(data["signature"], validate=True)
        except (ValueError, TypeError) as exc:
            raise CheckpointInvalid(
                "checkpoint root_hash must be hex and signature base64"
            ) from exc
        checkpoint = cls(
            log_id=data["log_id"],
            tree_size=data["tree_size"],
            root_hash=root_hash,
            timestamp=data["timestamp"],
            key_id=data["key_id"],
            signature=signature,
        )
        _check_fields(checkpoint)
        return checkpoint


def _message(log_id: str, tree_size: int, root_hash: bytes, timestamp: str, kid: str) -> bytes:
    body = {
        "key_id": kid,
        "log_id": log_id,
        "root_hash": root_hash.hex(),
        "timestamp": timestamp,
        "tree_size": tree_size,
    }
    return _SIGNING_CONTEXT + canonical_json(body)


def _check_fields(cp: Checkpoint) -> None:
    if not isinstance(cp.log_id, str) or not cp.log_id:
        raise CheckpointInvalid("checkpoint log_id must be a non-empty string")
    if not isinstance(cp.tree_size, int) or isinstance(cp.tree_size, bool) or cp.tree_size < 0:
        raise CheckpointInvalid(f"checkpoint tree_size must be an integer >= 0: {cp.tree_size!r}")
    if not isinstance(cp.root_hash, bytes) or len(cp.root_hash) != HASH_SIZE:
        raise CheckpointInvalid(f"checkpoint root_hash must be {HASH_SIZE} bytes")
    if not isinstance(cp.timestamp, str) or not is_rfc3339_utc(cp.timestamp):
        raise CheckpointInvalid(f"checkpoint timestamp must be RFC 3339 UTC: {cp.timestamp!r}")
    if not isinstance(cp.key_id, str) or len(cp.key_id) != 16:
        raise CheckpointInvalid(f"checkpoint key_id must be 16 hex characters: {cp.key_id!r}")
    if not isinstance(cp.signature, bytes) or len(cp.signature) != _SIGNATURE_SIZE:
        raise CheckpointInvalid(f"checkpoint signature must be {_SIGNATURE_SIZE} bytes")


def sign_checkpoint(
    signing_key: SigningKey,
    *,
    log_id: str,
    tree_size: int,
    root_hash: bytes,
    timestamp: str | None = None,
) -> Checkpoint:
    """Sign the statement that log ``log_id`` has ``tree_size`` leaves with ``root_hash``."""
    timestamp = utc_now() if timestamp is None else timestamp
    unsigned = Checkpoint(log_id, tree_size, root_hash, timestamp, signing_key.key_id, bytes(64))
    _check_fields(unsigned)
    signature = signing_key.private_key.sign(unsigned.signed_message())
    return Checkpoint(log_id, tree_size, root_hash, timestamp, signing_key.key_id, signature)


def verify_checkpoint(checkpoint: Checkpoint, public_keys: PublicKeys) -> None:
    """Check the checkpoint's signature against the trusted key it names.

    Raises ``CheckpointInvalid`` if the checkpoint names a key the verifier does not hold (signed
    by another key) or if the signature does not match its content (forged or altered).
    """
    if not isinstance(checkpoint, Checkpoint):
        raise CheckpointInvalid(
            f"expected a Checkpoint, got {type(checkpoint).__name__}",
            hint="parse JSON checkpoints with Checkpoint.from_dict",
            reason="malformed",
        )
    _check_fields(checkpoint)
    ring = keyring(public_keys)
    key = ring.get(checkpoint.key_id)
    if key is None:
        trusted = ", ".join(sorted(ring)) or "none"
        raise CheckpointInvalid(
            f"checkpoint of size {checkpoint.tree_size} is signed by key {checkpoint.key_id}, "
            f"which is not a trusted key (trusted: {trusted})",
            hint="if the log rotated its key, add the new public key (see docs/audit.md)",
            reason="unknown_key",
        )
    try:
        key.verify(checkpoint.signature, checkpoint.signed_message())
    except InvalidSignature:
        raise CheckpointInvalid(
            f"signature of the checkpoint of size {checkpoint.tree_size} does not verify under "
            f"key {checkpoint.key_id}: the checkpoint was forged or altered",
            reason="bad_signature",
        ) from None


# --- key files ----------------------------------------------------------------------------------


def public_key_path(private_key_path: str | os.PathLike[str]) -> Path:
    """Where ``generate_signing_key`` writes the public key: next to the private key, ``.pub``."""
    path = Path(private_key_path)
    return path.with_name(path.name + ".pub")


def generate_signing_key(
    path: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> SigningKey:
    """Create a new Ed25519 key: private key PEM at ``path`` (mode 0600), public key at ``.pub``.

    Refuses to overwrite an existing file: a lost signing key cannot be recreated, and losing the
    old public key would make old checkpoints unverifiable. With ``passphrase`` the PEM is
    encrypted (PKCS#8, the best scheme ``cryptography`` offers).
    """
    path = Path(path)
    pub_path = public_key_path(path)
    for existing in (path, pub_path):
        if existing.exists():
            raise Conflict(
                f"{existing} already exists; refusing to overwrite a key",
                hint="pick a new path for a rotated key and keep the old public key",
            )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signing_key = SigningKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = signing_key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # O_EXCL closes the race between the exists() check and the write; 0600 is set at creation so
    # the key is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    public_pem = signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(public_pem)
    return signing_key


def load_signing_key(
    path: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> SigningKey:
    """Load a private key written by ``generate_signing_key``.

    Raises ``ConfigurationError`` if the file is missing, readable by group or others, encrypted
    without a passphrase given (or with a wrong one), or not an Ed25519 key.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the audit signing key {path}: {exc.strerror}",
            hint="create one with charter.audit.generate_signing_key(path)",
        ) from exc
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(
            f"the audit signing key {path} is accessible by other users "
            f"(mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot load the audit signing key {path}: {exc}",
            hint="check the passphrase; the file must be a PKCS#8 PEM Ed25519 key",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 key",
            hint="generate an audit key with charter.audit.generate_signing_key(path)",
        )
    return SigningKey(key)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load a PEM public key (``<private key>.pub``); raises ``ConfigurationError`` if unusable."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the audit public key {path}: {exc.strerror}",
            hint="it is written next to the private key as <key>.pem.pub",
        ) from exc
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
