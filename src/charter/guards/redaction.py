"""Reversible redaction within one conversation: placeholders go to the model, originals come back.

A ``RedactionVault`` belongs to one conversation of one caller and lives in the gateway's memory
for as long as that conversation does; it is never written anywhere in plain text. If it has to
leave the process (to another replica, or to a session store), ``seal`` encrypts it with
AES-256-GCM under a key the operator holds, bound to the conversation id, and ``unseal`` is the only
way back. The ``Redactor`` puts the spans of any scanners through Presidio's anonymizer with a
vault-backed operator, so the same value always gets the same placeholder in one conversation.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerSpan
from presidio_anonymizer.operators import Operator, OperatorType

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import Scanner
from charter.policy.verdict import Span

__all__ = ["Redaction", "RedactionVault", "Redactor", "resolve_overlaps"]

# A placeholder is ``<TYPE_N>``: the entity type in capital letters and underscores, and a counter
# that starts at 1 per type. Types hold no digits, so ``TYPE_N`` splits without ambiguity.
_TYPE = re.compile(r"[A-Z]+(?:_[A-Z]+)*")
# Up to six words and a number: every form ``restore`` would accept for some type, issued or not
# (``<EMAIL_ADDRESS_1>``, ``email address 1``...). Used to reserve what users write themselves.
_PLACEHOLDER_SHAPE = re.compile(
    r"(?<![A-Za-z])((?:[A-Za-z]+[_ \-]){0,5}[A-Za-z]+)[_ \-]?(\d+)(?!\d)"
)
_WORD_SEP = re.compile(r"[_ \-]")
_DIGIT = re.compile(r"\d")
_SEAL_VERSION = 1
_SEAL_CONTEXT = b"charter.redaction.vault.v1:"


def _normal_type(raw: str) -> str:
    return re.sub(r"[ \-]", "_", raw.strip()).upper()


class RedactionVault:
    """The placeholder-to-original map of one conversation, held in memory only.

    ``placeholder(entity_type, value)`` issues ``<ENTITY_TYPE_N>``, the same one for the same value
    every time. ``restore(text)`` replaces the placeholders this vault issued, and only those, with
    their originals; it tolerates the ways models mangle them (case, missing or different
    brackets, spaces instead of underscores). A placeholder the vault did not issue is left as it
    is: restoring it would let whoever wrote it read a value they never saw. Placeholder-shaped
    text found in user input is reserved with ``reserve`` so the vault never issues that name.

    Thread-safe: one conversation may have concurrent requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[tuple[str, int], str] = {}
        self._counters: dict[str, int] = {}
        self._reserved: set[tuple[str, int]] = set()
        self._restore_re: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        # Never the originals: a vault can end up in a log line or a traceback.
        return f"RedactionVault({len(self._by_placeholder)} placeholders)"

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def placeholder(self, entity_type: str, value: str) -> str:
        """The placeholder for ``value``; a new one the first time it is seen.

        The type is normalised to capital letters and underscores (``ipv4-address`` becomes
        ``IPV_ADDRESS``) so that every placeholder has the one shape ``restore`` knows.
        """
        entity_type = re.sub(r"[^A-Z]+", "_", entity_type.upper()).strip("_")
        if not _TYPE.fullmatch(entity_type):
            raise InvalidRequest(
                "an entity type needs at least one letter to name a placeholder",
                hint="label spans with names such as EMAIL_ADDRESS",
            )
        with self._lock:
            existing = self._by_value.get((entity_type, value))
            if existing is not None:
                return existing
            n = self._counters.get(entity_type, 0) + 1
            while (entity_type, n) in self._reserved:
                n += 1
            self._counters[entity_type] = n
            name = f"<{entity_type}_{n}>"
            self._by_value[(entity_type, value)] = name
            self._by_placeholder[(entity_type, n)] = value
            self._restore_re = None
            return name

    def reserve(self, text: str) -> int:
        """Mark placeholder-shaped strings in ``text`` as never to be issued; return how many.

        For "my email address 1" this reserves ADDRESS 1, EMAIL_ADDRESS 1 and MY_EMAIL_ADDRESS 1:
        whichever type a later value has, the name the user already wrote is not given to it.
        """
        if not _DIGIT.search(text):
            return 0
        found: set[tuple[str, int]] = set()
        for m in _PLACEHOLDER_SHAPE.finditer(text):
            words = _WORD_SEP.split(m[1].upper())
            n = int(m[2])
            found.update(("_".join(words[i:]), n) for i in range(len(words)))
        with self._lock:
            fresh = found - self._reserved - set(self._by_placeholder)
            self._reserved |= fresh
        return len(fresh)

    def original(self, placeholder: str) -> str | None:
        """The original behind an issued placeholder, or None if this vault never issued it."""
        m = _PLACEHOLDER_SHAPE.fullmatch(placeholder.strip().strip("<>[]{}() "))
        if m is None:
            return None
        return self._by_placeholder.get((_normal_type(m[1]), int(m[2])))

    def restore(self, text: str) -> str:
        """Put the originals back into ``text`` (a model's answer) for the caller who owns them."""
        pattern = self._restore_pattern()
        if pattern is None:
            return text

        def swap(m: re.Match[str]) -> str:
            value = self._by_placeholder.get((_normal_type(m["type"]), int(m["n"])))
            return m[0] if value is None else value

        return pattern.sub(swap, text)

    def _restore_pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._restore_re is None and self._by_placeholder:
                types = sorted({t for t, _ in self._by_placeholder}, key=len, reverse=True)
                # Each type, in any case, with "_", " " or "-" between its words; then the
                # counter; brackets of any common kind, or none. Only issued types are matched,
                # and the counter is checked against the issued ones in ``restore``.
                alts = "|".join(r"[_ \-]".join(map(re.escape, t.split("_"))) for t in types)
                self._restore_re = re.compile(
                    rf"(?:[<\[{{(]\s*)?(?<![A-Za-z0-9])(?P<type>{alts})[_ \-]?(?P<n>\d+)(?!\d)"
                    r"(?:\s*[>\]})])?",
                    re.IGNORECASE,
                )
            return self._restore_re

    def seal(self, key: bytes, conversation_id: str) -> bytes:
        """The vault encrypted with AES-GCM under ``key`` (16, 24 or 32 bytes), bound to the id."""
        aead = _aead(key)
        with self._lock:
            payload = {
                "v": _SEAL_VERSION,
                "entries": [[t, n, v] for (t, n), v in sorted(self._by_placeholder.items())],
                "counters": self._counters,
                "reserved": sorted([t, n] for t, n in self._reserved),
            }
        nonce = os.urandom(12)
        plain = json.dumps(payload, separators=(",", ":")).encode()
        return nonce + aead.encrypt(nonce, plain, _SEAL_CONTEXT + conversation_id.encode())

    @classmethod
    def unseal(cls, sealed: bytes, key: bytes, conversation_id: str) -> RedactionVault:
        """Open a sealed vault; fails if the key, the conversation id or any byte is wrong."""
        aead = _aead(key)
        try:
            plain = aead.decrypt(sealed[:12], sealed[12:], _SEAL_CONTEXT + conversation_id.encode())
        except InvalidTag:
            raise InvalidRequest(
                "the sealed redaction vault could not be opened",
                hint="it was sealed with another key or for another conversation, or was altered",
            ) from None
        payload: dict[str, Any] = json.loads(plain)
        vault = cls()
        for t, n, v in payload["entries"]:
            vault._by_placeholder[(t, n)] = v
            vault._by_value[(t, v)] = f"<{t}_{n}>"
        vault._counters = dict(payload["counters"])
        vault._reserved = {(t, n) for t, n in payload["reserved"]}
        return vault


def resolve_overlaps(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Keep the best of overlapping spans (higher score, then longer), sorted by start.

    Two recognizers can claim the same characters (the domain of an email is also a URL; a card
    number can look like a phone number); a redaction needs one label per character.
    """
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, s.start - s.end, s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return tuple(sorted(kept, key=lambda s: s.start))


def _aead(key: bytes) -> AESGCM:
    if len(key) not in (16, 24, 32):
        raise ConfigurationError(
            f"a redaction vault key must be 16, 24 or 32 bytes, got {len(key)}",
            hint="generate one with AESGCM.generate_key(bit_length=256) and keep it secret",
        )
    return AESGCM(key)


@dataclass(frozen=True, slots=True)
class Redaction:
    """A redacted text and what was replaced in it (positions refer to the original text)."""

    text: str
    spans: tuple[Span, ...]

    @property
    def changed(self) -> bool:
        return bool(self.spans)


class _VaultOperator(Operator):
    """Presidio anonymizer operator that asks the conversation's vault for the placeholder."""

    NAME: ClassVar[str] = "charter_vault"

    def operate(self, text: str, params: dict[str, Any] | None = None) -> str:
        assert params is not None  # Presidio always passes params, with the entity type added
        vault: RedactionVault = params["vault"]
        return vault.placeholder(params["entity_type"], text)

    def validate(self, params: dict[str, Any] | None = None) -> None:
        if not params or not isinstance(params.get("vault"), RedactionVault):
            raise InvalidRequest("the vault operator needs a RedactionVault in params['vault']")

    def operator_name(self) -> str:
        return self.NAME

    def operator_type(self) -> OperatorType:
        return OperatorType.Anonymize


class Redactor:
    """Replace what the scanners found with vault placeholders, through Presidio's anonymizer."""

    def __init__(self, scanners: Sequence[Scanner]) -> None:
        self.scanners = tuple(scanners)
        self._engine = AnonymizerEngine()  # type: ignore[no-untyped-call]
        self._engine.add_anonymizer(_VaultOperator)

    def redact(self, text: str, vault: RedactionVault) -> Redaction:
        """Scan ``text`` with every scanner and redact what they found."""
        spans = [s for scanner in self.scanners for s in scanner.scan(text).spans]
        return self.redact_spans(text, spans, vault)

    def redact_spans(self, text: str, spans: Iterable[Span], vault: RedactionVault) -> Redaction:
        """Redact ``spans`` already found in ``text`` (saves a second scan when a guard ran)."""
        # Placeholder-shaped text the user wrote is reserved first, so the vault never issues a
        # name that already appears in the conversation and would be restored from it.
        vault.reserve(text)
        spans = resolve_overlaps(spans)
        if not spans:
            return Redaction(text=text, spans=())
        # Issue in reading order (the anonymizer works from the end of the text backwards), so
        # the first email of a conversation is <EMAIL_ADDRESS_1>.
        for span in spans:
            vault.placeholder(span.label, text[span.start : span.end])
        result = self._engine.anonymize(
            text=text,
            analyzer_results=[AnonymizerSpan(s.label, s.start, s.end, s.score) for s in spans],
            operators={"DEFAULT": OperatorConfig(_VaultOperator.NAME, {"vault": vault})},
        )
        return Redaction(text=result.text, spans=spans)

    def restore(self, text: str, vault: RedactionVault) -> str:
        """Put the originals back into a model's answer; see ``RedactionVault.restore``."""
        return vault.restore(text)
