"""Who may use the console and what each role may do: sign-in tokens, signed session cookies,
CSRF tokens and the role -> page/change table the server checks on every request.

Roles come from the charter (``Principal.roles``). A permission is granted by any role that lists
it; ``auditor`` lists only reading, so a principal who is only an auditor cannot change anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from charter.document.model import Charter, Role
from charter.errors import InvalidRequest, PermissionDenied
from charter.storage.base import KeyRow, Store

TOKEN_PREFIX = "ct-charter-"
SESSION_COOKIE = "charter_console"
LOGIN_COOKIE = "charter_console_login"  # the pre-session CSRF token of the sign-in form
SESSION_MAX_AGE_S = 12 * 3600

# What each role may open (pages) and do (changes). Checked on the server for every request;
# the templates only hide what the server would refuse anyway.
PAGES: dict[str, frozenset[Role]] = {
    "decisions": frozenset(Role),
    "approvals": frozenset({Role.ADMIN, Role.OWNER, Role.REVIEWER, Role.AUDITOR}),
    "traffic": frozenset({Role.ADMIN, Role.OWNER, Role.AUDITOR}),
    "audit": frozenset({Role.ADMIN, Role.OWNER, Role.AUDITOR}),
    "evals": frozenset({Role.ADMIN, Role.OWNER, Role.GRADER, Role.AUDITOR}),
    "spend": frozenset({Role.ADMIN, Role.OWNER, Role.AUDITOR}),
    "users": frozenset({Role.ADMIN}),
}
CHANGES: dict[str, frozenset[Role]] = {
    # Which approvals a reviewer may decide is the approval control's list of roles; the action
    # service checks it again. These are the roles that may try at all.
    "decide": frozenset({Role.ADMIN, Role.OWNER, Role.REVIEWER}),
    "label": frozenset({Role.GRADER}),
    "checkpoint": frozenset({Role.ADMIN, Role.OWNER}),
    "tokens": frozenset({Role.ADMIN}),
}
# Reading actions that use POST (they run work, they change nothing).
READS: dict[str, frozenset[Role]] = {"verify": PAGES["audit"]}


def hash_token(token: str) -> str:
    """The SHA-256 under which a token is stored (a 256-bit random token needs no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


def roles_of(charter: Charter, principal: str) -> frozenset[Role]:
    """The console roles the charter gives ``principal`` (empty for an unknown one)."""
    for p in charter.principals:
        if p.id == principal:
            return frozenset(p.roles)
    return frozenset()


def may_open(roles: Iterable[Role], page: str) -> bool:
    """Whether a holder of ``roles`` may open ``page``."""
    return bool(PAGES[page] & set(roles))


def may_change(roles: Iterable[Role], change: str) -> bool:
    """Whether a holder of ``roles`` may make ``change``."""
    table = CHANGES if change in CHANGES else READS
    return bool(table[change] & set(roles))


def require_page(roles: frozenset[Role], page: str) -> None:
    """``PermissionDenied`` naming the roles that may, unless ``roles`` may open ``page``."""
    if not may_open(roles, page):
        raise PermissionDenied(
            f"the {page} page needs one of the roles {_names(PAGES[page])}; you hold "
            f"{_names(roles) or 'none'}",
            hint="an admin gives roles in the charter's principals",
        )


def require_change(roles: frozenset[Role], change: str) -> None:
    """``PermissionDenied`` unless ``roles`` may make ``change``."""
    if not may_change(roles, change):
        allowed = CHANGES.get(change) or READS[change]
        raise PermissionDenied(
            f"this needs one of the roles {_names(allowed)}; you hold {_names(roles) or 'none'}"
            + (" (the auditor role only reads)" if Role.AUDITOR in roles else ""),
            hint="an admin gives roles in the charter's principals",
        )


def _names(roles: Iterable[Role]) -> str:
    return ", ".join(sorted(str(r) for r in roles))


def issue_token(
    store: Store, charter: Charter, principal: str, description: str = ""
) -> tuple[str, KeyRow]:
    """Issue a console sign-in token for a user principal with at least one role.

    Returns the token (shown once; only its hash is stored) and its stored row.
    """
    found = next((p for p in charter.principals if p.id == principal), None)
    if found is None:
        users = sorted(p.id for p in charter.principals if p.kind == "user")
        raise InvalidRequest(
            f"'{principal}' is not a principal of this charter",
            hint=f"users: {', '.join(users) or 'none (add a principal of kind user)'}",
        )
    if found.kind != "user":
        raise InvalidRequest(
            f"'{principal}' is a {found.kind}, not a user; console tokens are for people",
            hint="apps and teams call the API with virtual keys (`charter keys create`)",
        )
    if not found.roles:
        raise InvalidRequest(
            f"user '{principal}' holds no role, so the console would show them nothing",
            hint="give them roles in the charter: admin, owner, reviewer, grader or auditor",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = KeyRow(
        id="ct_" + secrets.token_hex(6),
        principal_id=principal,
        key_hash=hash_token(token),
        prefix=token[: len(TOKEN_PREFIX) + 4],
        description=description,
        created_at=dt.datetime.now(dt.UTC),
    )
    store.create_console_token(row)
    return token, row


def check_token(store: Store, charter: Charter, token: str) -> KeyRow:
    """The active token row for a presented token; ``PermissionDenied`` saying why not."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX):
        raise PermissionDenied(
            "that is not a console token",
            hint=f"console tokens start with {TOKEN_PREFIX}; ask an admin for one "
            "(`charter users token YOUR-ID`)",
        )
    row = store.find_console_token(hash_token(token))
    if row is None:
        raise PermissionDenied("unknown console token", hint="ask an admin for a new one")
    if not row.active:
        raise PermissionDenied("this console token was revoked", hint="ask an admin for a new one")
    if not roles_of(charter, row.principal_id):
        raise PermissionDenied(
            f"{row.principal_id} holds no role in the current charter",
            hint="an admin gives roles in the charter's principals",
        )
    return row


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: who, through which token, and the CSRF token of their forms."""

    principal: str
    token_id: str
    csrf: str
    roles: frozenset[Role] = frozenset()

    def may_open(self, page: str) -> bool:
        return may_open(self.roles, page)

    def may_change(self, change: str) -> bool:
        return may_change(self.roles, change)


def session_secret(content_key: bytes) -> bytes:
    """The cookie-signing secret, derived from the audit content key (shared by every replica
    that shares the audit keys), separated from its other use by a fixed label."""
    return hmac.new(content_key, b"charter console session cookie v1", hashlib.sha256).digest()


class SessionCodec:
    """Signs and reads session cookies (itsdangerous: HMAC-SHA1 over a timestamped payload)."""

    def __init__(self, secret: bytes, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="charter.console.session")
        self._login = URLSafeTimedSerializer(secret, salt="charter.console.login")
        self.max_age_s = max_age_s

    def dumps(self, session: Session) -> str:
        return str(
            self._signer.dumps({"p": session.principal, "t": session.token_id, "c": session.csrf})
        )

    def loads(self, cookie: str) -> Session | None:
        """The session in a cookie, or None when it is forged, altered or too old."""
        try:
            data: Any = self._signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "ptc"):
            return None
        return Session(data["p"], data["t"], data["c"])

    def login_token(self) -> str:
        """A fresh CSRF token for the sign-in form (signed, so the cookie cannot be planted)."""
        return str(self._login.dumps(secrets.token_urlsafe(16)))

    def login_ok(self, cookie: str | None, form: str | None) -> bool:
        """Whether the sign-in form's CSRF field matches its cookie (double submit)."""
        if not cookie or not form or not hmac.compare_digest(cookie, form):
            return False
        try:
            self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return True


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether a POST carries the session's CSRF token."""
    return presented is not None and hmac.compare_digest(session.csrf, presented)
