"""Human checkpoints and staged actions: the ``approval`` control kind, the approval queue, and
``ActionService``, the library the gateway's tool-call policy and authorization API call.

See docs/approvals.md for the life of an action and how its rate caps are held. The service and
webhook names are imported on first use: the registry imports this package whenever a charter is
checked, and checking needs none of them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from charter.approvals.control import ApprovalHandler, approval_serving

if TYPE_CHECKING:
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

_LAZY = {
    "ActionEvent": "service",
    "ActionService": "service",
    "Authorization": "service",
    "action_dict": "service",
    "IDEMPOTENCY_HEADER": "webhooks",
    "SIGNATURE_HEADER": "webhooks",
    "TIMESTAMP_HEADER": "webhooks",
    "Delivery": "webhooks",
    "WebhookSender": "webhooks",
    "sign": "webhooks",
    "verify": "webhooks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"charter.approvals.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'charter.approvals' has no attribute {name!r}")


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
