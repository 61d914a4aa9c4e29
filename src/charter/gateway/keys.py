"""Virtual keys: which principal a presented key belongs to.

Keys come from the charter (an environment variable's value, or a SHA-256) and from the store
(`charter keys create`). Only hashes are kept. Store lookups are cached, and a cached key keeps
working while the database is unreachable: an outage must not turn into authentication failures
that never recover. Revocation reaches every replica within ``ttl_s``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio.to_thread

from charter.document.model import Charter
from charter.errors import AuthenticationFailed, StorageUnavailable
from charter.storage.base import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-charter-"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored (keys are random, so no salt is needed:
    a 256-bit random key cannot be guessed from its hash)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    principal: str
    source: str  # "charter" or "store"


class KeyRing:
    """Resolves presented keys to principals."""

    def __init__(
        self,
        charter: Charter,
        store: Store | None,
        environ: Mapping[str, str] | None = None,
        *,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.store = store
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._static: dict[str, KeyInfo] = {}
        self._cache: dict[str, tuple[KeyInfo | None, float]] = {}
        self.missing_env: list[str] = []
        principals = {p.id for p in charter.principals}
        for principal in charter.principals:
            for ref in principal.keys:
                digest = ref.sha256
                if ref.env is not None:
                    value = environ.get(ref.env)
                    if not value:
                        self.missing_env.append(ref.env)
                        log.warning(
                            "key %s: $%s is not set; that key cannot sign in", ref.id, ref.env
                        )
                        continue
                    digest = hash_key(value)
                assert digest is not None
                self._static[digest] = KeyInfo(ref.id, principal.id, "charter")
        self._principals = principals

    async def resolve(self, presented: str | None) -> KeyInfo:
        """The key's owner; ``AuthenticationFailed``, or ``StorageUnavailable`` if unknowable."""
        if not presented:
            raise AuthenticationFailed(
                "no API key given",
                hint="send `Authorization: Bearer <key>` (the OpenAI SDK's api_key)",
            )
        digest = hash_key(presented)
        info = self._static.get(digest)
        if info is not None:
            return info
        if self.store is None:
            raise AuthenticationFailed(
                "unknown API key", hint="check the key, or create one with `charter keys create`"
            )
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return self._known(cached[0])
        try:
            row = await anyio.to_thread.run_sync(self.store.find_key, digest)
        except StorageUnavailable:
            if cached is not None and cached[0] is not None:
                return cached[0]  # stale but known: keep serving through a database outage
            raise
        found = None
        if row is not None and row.active and row.principal_id in self._principals:
            found = KeyInfo(row.id, row.principal_id, "store")
        self._cache[digest] = (found, now + (self.ttl_s if found else self.negative_ttl_s))
        return self._known(found)

    def invalidate(self, key_id: str) -> None:
        """Forget a revoked key now (other replicas forget it within ``ttl_s``)."""
        for digest, (info, _) in list(self._cache.items()):
            if info is not None and info.key_id == key_id:
                del self._cache[digest]

    @staticmethod
    def _known(info: KeyInfo | None) -> KeyInfo:
        if info is None:
            raise AuthenticationFailed(
                "unknown or revoked API key", hint="create one with `charter keys create`"
            )
        return info
