"""The one object the gateway calls when a request ends: metrics, traces, logs and drift.

``Observer.observe(outcome, latency_s)`` is cheap and never raises: it counts the request in
Prometheus, emits its span when tracing is configured, writes one JSON log line, and feeds the
drift monitors, whose alerts go to the audit trail (queued, not awaited), to the webhooks (from a
background thread) and to the metrics. ``Observer.routes(gateway)`` serves ``GET /metrics``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from charter.audit.log import AuditLog
from charter.document.model import Charter
from charter.errors import AuthenticationFailed
from charter.monitors.drift import DriftAlert, DriftMonitor
from charter.monitors.observation import Observation
from charter.monitors.webhook import AlertSender, sender_for
from charter.observability.logs import REQUEST_LOGGER
from charter.observability.metrics import Metrics
from charter.observability.tracing import Tracing
from charter.policy.runtime import principal_chain
from charter.policy.verdict import Action
from charter.storage.base import Store

if TYPE_CHECKING:
    from charter.gateway.service import Gateway, Outcome

log = logging.getLogger(__name__)
request_log = logging.getLogger(REQUEST_LOGGER)


def content_allowed(charter: Charter) -> bool:
    """True when the charter lets redacted text be kept (its audit control says ``redacted``)."""
    return any(
        c.kind == "audit" and c.mode != "off" and c.settings.content == "redacted"
        for c in charter.controls
    )


def model_providers(charter: Charter) -> dict[str, str]:
    """Model name -> the ``gen_ai.provider.name`` of its provider's kind."""
    names = {"openai": "openai", "anthropic": "anthropic", "simulated": "charter.simulated"}
    return {m.name: names[p.kind] for p in charter.providers for m in p.models}


class Observer:
    """Metrics, traces, request logs and drift monitors for one charter."""

    def __init__(
        self,
        charter: Charter,
        *,
        charter_version: str | None = None,
        principals: Callable[[str], tuple[str, ...]] | None = None,
        audit: AuditLog | None = None,
        store: Store | None = None,
        tracing: Tracing | None = None,
        alerts: AlertSender | None = None,
        send_alerts: bool = True,
        metrics_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``alerts`` defaults to a sender for the monitors' webhooks (``send_alerts=False``
        sends none); ``metrics_token``, when set, is the bearer token ``/metrics`` requires."""
        self.charter = charter
        self.version = charter_version
        self.audit = audit
        self.store = store
        self.tracing = tracing
        self.metrics_token = metrics_token
        self.clock = clock
        self.metrics = Metrics(charter)
        self.content_allowed = content_allowed(charter)
        if charter_version:
            self.metrics.set_version(charter_version)
        self._chains: dict[str, tuple[str, ...]] = {}
        self._principals = principals or (lambda p: principal_chain(charter, p))
        if alerts is None and send_alerts:
            alerts = sender_for(charter)
        self.alerts = alerts
        self.drift = DriftMonitor(charter, charter_version=charter_version)
        self.drift.add_sink(self.metrics.alert)
        self.drift.add_sink(self._log_alert)
        if audit is not None:
            self.drift.add_sink(self._record_alert)
        if self.alerts is not None:
            self.drift.add_sink(self.alerts)

    @classmethod
    def for_gateway(cls, gateway: Gateway, **kwargs: Any) -> Observer:
        """An observer wired to a gateway's charter, engine, audit log and store."""
        store = gateway.spend.store if gateway.spend is not None else None
        return cls(
            gateway.charter,
            charter_version=gateway.version,
            principals=gateway.engine.principals_of,
            audit=gateway.audit,
            store=store,
            **kwargs,
        )

    # --- per request ---------------------------------------------------------------------------

    def observe(
        self,
        outcome: Outcome,
        latency_s: float,
        *,
        operation: str | None = None,
        traceparent: str | None = None,
    ) -> list[DriftAlert]:
        """Account for a request that ended ``latency_s`` seconds after it arrived.

        Never raises (a failure here is logged, not turned into a failed request); returns the
        drift alerts this request raised.
        """
        try:
            return self._observe(outcome, latency_s, operation, traceparent)
        except Exception:
            log.exception("observing request %s failed", outcome.request_id)
            return []

    def _observe(
        self, outcome: Outcome, latency_s: float, operation: str | None, traceparent: str | None
    ) -> list[DriftAlert]:
        op = operation or getattr(outcome, "operation", None) or "chat"
        obs = Observation.from_outcome(outcome, self._chain(outcome.principal), self.clock())
        self.metrics.observe(obs, outcome.verdicts, latency_s)
        if self.tracing is not None:
            self.tracing.record(
                outcome,
                latency_s,
                operation=op,
                charter_version=self.version,
                content_allowed=self.content_allowed,
                traceparent=traceparent,
            )
        if request_log.isEnabledFor(logging.INFO):
            self._log_request(outcome, obs, latency_s)
        return self.drift.add(obs)

    def _chain(self, principal: str) -> tuple[str, ...]:
        chain = self._chains.get(principal)
        if chain is None:
            chain = self._principals(principal)
            if len(self._chains) < 10_000:
                self._chains[principal] = chain
        return chain

    def _log_request(self, outcome: Outcome, obs: Observation, latency_s: float) -> None:
        fired = [
            f"{v.control_id}:{v.action.value}" + ("" if v.enforced else ":shadow")
            for v in outcome.verdicts
            if v.action is not Action.ALLOW
        ]
        request_log.info(
            "%s %s %s %d",
            outcome.request_id,
            outcome.principal,
            obs.outcome_class,
            outcome.status,
            extra={
                "event": "request",
                "request_id": outcome.request_id,
                "principal": outcome.principal,
                "model": outcome.model,
                "status": outcome.status,
                "outcome": obs.outcome_class,
                "latency_ms": round(latency_s * 1000, 3),
                "input_tokens": obs.input_tokens,
                "output_tokens": obs.output_tokens,
                "cost_usd": outcome.cost_micro_usd / 1e6,
                "fired": fired,
                "refused_by": outcome.refused_by.control_id if outcome.refused_by else None,
                "error": outcome.error,
                "audit_index": outcome.audit_index,
            },
        )

    # --- alerts ----------------------------------------------------------------------------------

    def _record_alert(self, alert: DriftAlert) -> None:
        assert self.audit is not None
        future = self.audit.submit(alert.draft())
        future.add_done_callback(_report_failure)

    def _log_alert(self, alert: DriftAlert) -> None:
        log.warning(alert.summary(), extra={"event": "drift_alert", "monitor": alert.monitor})

    # --- endpoints and gauges --------------------------------------------------------------------

    def set_approvals_pending(self, callback: Callable[[], float]) -> None:
        """The ``charter_approvals_pending`` gauge reads ``callback()`` at each scrape."""
        self.metrics.set_approvals_source(callback)

    def scrape(self) -> bytes:
        """Refresh the gauges that are read, not counted, and return the exposition text.

        Blocking (budgets are read from the store): the endpoint runs it in a worker thread.
        """
        if self.store is not None:
            try:
                self.metrics.refresh_budgets(self.store, self.clock())
            except Exception as exc:  # a scrape without budget gauges beats a failed scrape
                log.warning("budget gauges not refreshed: %s", exc)
        self.metrics.readings(self.drift.readings(self.clock()))
        return self.metrics.exposition()

    def routes(self, gateway: Gateway | None = None) -> list[Route]:
        """``GET /metrics`` in the Prometheus text format (behind a bearer token if set)."""

        async def metrics(request: Request) -> Response:
            if self.metrics_token is not None:
                header = request.headers.get("authorization", "")
                given = header[7:].strip() if header[:7].lower() == "bearer " else ""
                if not hmac.compare_digest(given.encode(), self.metrics_token.encode()):
                    error = AuthenticationFailed(
                        "/metrics needs the metrics token",
                        hint="send Authorization: Bearer <the metrics token>",
                    )
                    return JSONResponse(error.to_dict(), status_code=error.status)
            body = await anyio.to_thread.run_sync(self.scrape)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        return [Route("/metrics", metrics, methods=["GET"])]

    def close(self) -> None:
        """Deliver queued alerts and flush spans."""
        if self.alerts is not None:
            self.alerts.close()
        if self.tracing is not None:
            self.tracing.shutdown()


def _report_failure(future: Any) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("drift alert not recorded in the audit trail: %s", exc)
