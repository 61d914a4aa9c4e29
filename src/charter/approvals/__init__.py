"""Human checkpoints and staged actions: the ``approval`` control kind, the approval queue, and
``ActionService``, the library the gateway's tool-call policy and authorization API call.

See docs/approvals.md for the life of an action and how its rate caps are held.
"""

from __future__ import annotations

from charter.approvals.control import ApprovalHandler, approval_serving
from charter.approvals.service import (
    ActionEvent,
    ActionService,
    Authorization,
    action_dict,
)
from charter.approvals.webhooks import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    WebhookSender,
    sign,
    verify,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ActionEvent",
    "ActionService",
    "ApprovalHandler",
    "Authorization",
    "Delivery",
    "WebhookSender",
    "action_dict",
    "approval_serving",
    "sign",
    "verify",
]
