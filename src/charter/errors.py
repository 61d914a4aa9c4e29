"""The one error tree of Charter.

Every error Charter raises on purpose is a ``CharterError``. Foreign exceptions (sqlite3, psycopg,
redis, httpx, yaml) are translated once, where they cross into Charter, so callers only ever catch
these::

    CharterError
    ├── ClientError                 the caller's fault (4xx on the wire)
    │   ├── InvalidRequest          400  malformed input; says what to send instead
    │   ├── AuthenticationFailed    401  missing, unknown or revoked key
    │   ├── PermissionDenied        403  a route control does not allow this
    │   ├── ReviewRequired          403  escalated content waits for (or was refused by) a person
    │   ├── NotFound                404
    │   ├── Conflict                409  e.g. approving an action twice
    │   ├── PolicyViolation         422  a control blocked the content or the action
    │   ├── RateLimited             429  a rate_limit control
    │   └── BudgetExceeded          429  a budget control
    ├── UpstreamError               the model provider's fault (502)
    │   └── UpstreamTimeout         504
    ├── ConfigurationError          the operator's configuration (fails at start, never per request)
    │   ├── CharterInvalid          a charter file with findings (each with file:line:column)
    │   ├── NotImplementedSetting   a setting this version validates but cannot enforce yet
    │   └── MissingDependency       an optional extra is not installed; says the pip line
    ├── StorageUnavailable          the database, Redis or disk could not be reached (503)
    └── InternalError               a bug in Charter (500); please report it

``ClientError`` subclasses carry an HTTP status and an OpenAI-style ``type`` and ``code`` so every
adapter renders the same error the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charter.document.findings import Finding


class CharterError(Exception):
    """Base of every error Charter raises on purpose."""

    status: int = 500
    type: str = "charter_error"
    code: str = "charter_error"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def response_headers(self) -> dict[str, str]:
        """HTTP headers an adapter adds to the error response (none by default)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The error in the OpenAI error shape (``{"error": {...}}``) used on every route."""
        body: dict[str, Any] = {"message": str(self), "type": self.type, "code": self.code}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return {"error": body}


class ClientError(CharterError):
    """The caller sent something Charter will not act on."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(ClientError):
    """The request is malformed; the message says what to send instead."""


class AuthenticationFailed(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ReviewRequired(ClientError):
    """A guard escalated the content: a person reviews it before it is answered.

    403 rather than 409 or 202: the OpenAI SDKs retry 409 (and 429, 5xx) on their own, which
    would only ask again, and read any 2xx as a completion. ``approval`` (id, status, deadline)
    is in the body and its id in the ``X-Charter-Approval`` header. ``code`` says where the
    review stands: ``review_pending``, ``review_approved`` (re-send with the header),
    ``review_rejected`` or ``review_expired``.
    """

    status = 403
    type = "review_required"
    code = "review_pending"

    def response_headers(self) -> dict[str, str]:
        approval = self.details.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("id"), str):
            return {"x-charter-approval": approval["id"]}
        return {}


class NotFound(ClientError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(ClientError):
    status = 409
    type = "conflict_error"
    code = "conflict"


class PolicyViolation(ClientError):
    """A control of the charter blocked the content or the action."""

    status = 422
    type = "policy_violation"
    code = "blocked_by_charter"


class RateLimited(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(ClientError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class UpstreamError(CharterError):
    """The model provider failed or answered with something unusable."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class ConfigurationError(CharterError):
    """The operator's configuration is wrong; raised at start-up, never per request."""

    status = 500
    type = "configuration_error"
    code = "configuration_error"


class CharterInvalid(ConfigurationError):
    """A charter file has error findings; ``findings`` lists every one, not only the first."""

    code = "charter_invalid"

    def __init__(self, findings: Sequence[Finding], *, path: str | None = None) -> None:
        errors = [f for f in findings if f.severity == "error"]
        first = errors[0].render() if errors else "no errors"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"charter is invalid: {first}{more}",
            hint=f"run `charter check {path}` to list every finding" if path else None,
        )
        self.findings = list(findings)


class NotImplementedSetting(ConfigurationError):
    """A setting this version of Charter validates but does not enforce yet."""

    code = "not_implemented"


class MissingDependency(ConfigurationError):
    """An optional dependency is missing; the message carries the exact install line."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed",
            hint=f"pip install 'charter[{extra}]'",
        )


class StorageUnavailable(CharterError):
    """The database, Redis or local disk could not be reached or refused the operation."""

    status = 503
    type = "service_unavailable"
    code = "storage_unavailable"


class InternalError(CharterError):
    """A bug in Charter. The message says what was being done; please report it."""

    status = 500
    type = "internal_error"
    code = "internal_error"
