"""Retention statements: the signed content of a ``retention`` record.

When records pass the charter's retention period their bodies are removed from the store and only
their leaf hashes stay. The ``retention`` record appended at that moment says which prefix
``[0, pruned_before)`` was summarised and the root of the tree at that size, signed with the log's
checkpoint key, so a verifier can tell authorised pruning from a body someone deleted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from charter.audit.canonical import canonical_json
from charter.audit.checkpoint import SigningKey
from charter.audit.merkle import HASH_SIZE
from charter.audit.records import AuditRecord, RecordKind, Scalar, is_rfc3339_utc
from charter.errors import InvalidRequest

RETENTION_FORMAT = "charter.audit.retention/v1"
# A context line of its own, so a retention signature can never pass for a checkpoint signature
# (or the reverse), although the same key makes both.
_SIGNING_CONTEXT = RETENTION_FORMAT.encode() + b"\n"
_DETAIL_KEYS = frozenset(
    {"cutoff", "key_id", "log_id", "pruned_before", "retention", "root_hash", "signature"}
)


class RetentionInvalid(InvalidRequest):
    """A ``retention`` record is malformed or its signature does not hold; the message says why."""

    code = "invalid_retention"


@dataclass(frozen=True, slots=True)
class RetentionStatement:
    """Records ``[0, pruned_before)`` of log ``log_id``, whose tree has root ``root_hash``, were
    committed before ``cutoff`` and are summarised: their bodies may be removed.

    ``retention`` is the charter's period (``"400d"``) or None when an operator chose the cutoff.
    """

    log_id: str
    pruned_before: int
    root_hash: bytes
    cutoff: str
    retention: str | None
    key_id: str
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers: a context line, then canonical JSON."""
        body = {
            "cutoff": self.cutoff,
            "key_id": self.key_id,
            "log_id": self.log_id,
            "pruned_before": self.pruned_before,
            "retention": self.retention,
            "root_hash": self.root_hash.hex(),
        }
        return _SIGNING_CONTEXT + canonical_json(body)

    def details(self) -> dict[str, Scalar]:
        """The ``details`` of the retention record that carries this statement."""
        return {
            "cutoff": self.cutoff,
            "key_id": self.key_id,
            "log_id": self.log_id,
            "pruned_before": self.pruned_before,
            "retention": self.retention,
            "root_hash": self.root_hash.hex(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_record(cls, record: AuditRecord) -> RetentionStatement:
        """The statement a ``retention`` record carries; ``RetentionInvalid`` if it is malformed."""
        if record.kind is not RecordKind.RETENTION:
            raise RetentionInvalid(f"record {record.index} is a {record.kind.value} record")
        d = record.details
        if set(d) != _DETAIL_KEYS:
            raise RetentionInvalid(
                f"retention record {record.index} has details {sorted(d)}, "
                f"expected {sorted(_DETAIL_KEYS)}"
            )
        n = d["pruned_before"]
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= record.index:
            raise RetentionInvalid(
                f"retention record {record.index} names pruned_before {n!r}: it must be an "
                "integer no larger than the record's own index (a summary follows what it sums)"
            )
        texts = {k: d[k] for k in ("cutoff", "key_id", "log_id", "root_hash", "signature")}
        if not all(isinstance(v, str) and v for v in texts.values()):
            raise RetentionInvalid(
                f"retention record {record.index} has an empty or non-text field"
            )
        if d["retention"] is not None and not isinstance(d["retention"], str):
            raise RetentionInvalid(f"retention record {record.index}: retention must be text")
        if not is_rfc3339_utc(str(d["cutoff"])):
            raise RetentionInvalid(f"retention record {record.index}: cutoff is not RFC 3339 UTC")
        try:
            root_hash = bytes.fromhex(str(d["root_hash"]))
            signature = base64.b64decode(str(d["signature"]), validate=True)
        except (ValueError, binascii.Error) as exc:
            raise RetentionInvalid(
                f"retention record {record.index}: root_hash must be hex, signature base64"
            ) from exc
        if len(root_hash) != HASH_SIZE:
            raise RetentionInvalid(f"retention record {record.index}: root_hash is not 32 bytes")
        retention = d["retention"]
        return cls(
            log_id=str(d["log_id"]),
            pruned_before=n,
            root_hash=root_hash,
            cutoff=str(d["cutoff"]),
            retention=retention if isinstance(retention, str) else None,
            key_id=str(d["key_id"]),
            signature=signature,
        )


def sign_retention(
    signing_key: SigningKey,
    *,
    log_id: str,
    pruned_before: int,
    root_hash: bytes,
    cutoff: str,
    retention: str | None,
) -> RetentionStatement:
    """Sign the statement that records ``[0, pruned_before)`` are summarised."""
    unsigned = RetentionStatement(
        log_id, pruned_before, root_hash, cutoff, retention, signing_key.key_id
    )
    signature = signing_key.private_key.sign(unsigned.signed_message())
    return RetentionStatement(
        log_id, pruned_before, root_hash, cutoff, retention, signing_key.key_id, signature
    )


def verify_retention(
    statement: RetentionStatement, ring: Mapping[str, Ed25519PublicKey], log_id: str | None
) -> None:
    """Check the statement's signature under the trusted key it names, and its log id.

    Raises ``RetentionInvalid`` saying what failed: an untrusted key, a forged or altered
    statement, or a statement about another log.
    """
    key = ring.get(statement.key_id)
    if key is None:
        raise RetentionInvalid(
            f"the retention statement for [0, {statement.pruned_before}) is signed by key "
            f"{statement.key_id}, which is not trusted"
        )
    try:
        key.verify(statement.signature, statement.signed_message())
    except InvalidSignature:
        raise RetentionInvalid(
            f"the signature of the retention statement for [0, {statement.pruned_before}) does "
            "not verify: the record was forged or altered"
        ) from None
    if log_id is not None and statement.log_id != log_id:
        raise RetentionInvalid(
            f"the retention statement is for log {statement.log_id!r}, not {log_id!r}"
        )
