"""Key management shared by the admin API and `charter keys`: create, list, revoke.

A created key is shown once, in full, to whoever created it; only its SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from charter.document.model import Charter
from charter.errors import InvalidRequest, NotFound
from charter.gateway.keys import KEY_PREFIX, hash_key
from charter.storage.base import KeyRow, Store


def create_key(
    store: Store, charter: Charter, principal: str, description: str = ""
) -> tuple[str, KeyRow]:
    """Create a key for ``principal``; returns the key (shown once) and its stored row."""
    known = {p.id for p in charter.principals}
    if principal not in known:
        raise InvalidRequest(
            f"'{principal}' is not a principal of this charter",
            hint=f"principals: {', '.join(sorted(known))}",
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = KeyRow(
        id="key_" + secrets.token_hex(6),
        principal_id=principal,
        key_hash=hash_key(key),
        prefix=key[: len(KEY_PREFIX) + 4],
        description=description,
        created_at=dt.datetime.now(dt.UTC),
    )
    store.create_key(row)
    return key, row


def key_to_dict(row: KeyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "principal": row.principal_id,
        "prefix": row.prefix,
        "description": row.description,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


async def keys_endpoint(gateway: Any, request: Request) -> Response:
    store: Store | None = gateway.keys.store
    if store is None:
        raise NotFound("this gateway has no key store")
    if request.method == "GET":
        principal = request.query_params.get("principal")
        rows = await anyio.to_thread.run_sync(store.list_keys, principal)
        return JSONResponse({"data": [key_to_dict(r) for r in rows]})
    if request.method == "POST":
        from charter.gateway.app import read_json

        body = await read_json(request, "key")
        if not isinstance(body, dict) or not isinstance(body.get("principal"), str):
            raise InvalidRequest('send {"principal": "<principal id>", "description": "..."}')
        key, row = await anyio.to_thread.run_sync(
            create_key, store, gateway.charter, body["principal"], str(body.get("description", ""))
        )
        return JSONResponse({"key": key, **key_to_dict(row)}, status_code=201)
    key_id = request.path_params["key_id"]
    revoked = await anyio.to_thread.run_sync(store.revoke_key, key_id, dt.datetime.now(dt.UTC))
    if not revoked:
        raise NotFound(f"no active key '{key_id}'", hint="list keys with GET /admin/v1/keys")
    gateway.keys.invalidate(key_id)
    return JSONResponse({"id": key_id, "revoked": True})
