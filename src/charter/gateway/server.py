"""Run the gateway under uvicorn (`charter serve`)."""

from __future__ import annotations

from charter.gateway.app import build_app
from charter.gateway.factory import build_services
from charter.gateway.keys import hash_key
from charter.observability import setup_logging
from charter.settings import Settings


def serve(settings: Settings) -> None:
    """Build the gateway from ``settings`` and serve it until interrupted."""
    import uvicorn

    setup_logging(settings.log_level)
    services = build_services(settings)
    app = build_app(
        services.gateway,
        admin_key_hash=hash_key(settings.admin_key) if settings.admin_key else None,
        on_shutdown=services.aclose,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # every request is in the audit trail; an access log would duplicate it
    )
