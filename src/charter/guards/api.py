"""Scanning text against a charter's guards outside a chat: ``POST /v1/charter/scan`` and the
library call behind it and behind ``charter scan``.

Both run the policy engine at the stage asked for (``Engine.evaluate``), exactly as the gateway
does on a request, so a scan says what production would do; there is no separate logic here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from charter.errors import CharterError, InternalError, InvalidRequest
from charter.policy.context import RequestContext
from charter.policy.engine import Engine, Evaluation
from charter.policy.verdict import Action, Stage

log = logging.getLogger(__name__)

SCAN_STAGES = (Stage.INPUT, Stage.OUTPUT, Stage.UNTRUSTED)
MAX_ROWS = 1000
"""Rows per API call; a larger batch belongs in ``charter scan``."""


@dataclass(frozen=True, slots=True)
class ScanRow:
    """The verdict on one text: what the gateway would do, which controls fired and why.

    ``verdict`` counts enforced controls only; ``fired`` lists every control whose verdict was not
    allow, shadow ones included (``enforced`` false), so a shadow control's would-be verdicts can
    be measured before it is enforced.
    """

    id: str
    stage: Stage
    verdict: Action
    controls: tuple[str, ...]
    decisions: tuple[str, ...]
    scores: dict[str, float]
    redacted_text: str | None
    latency_ms: float
    fired: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON row ``charter scan`` writes and the API returns."""
        out: dict[str, Any] = {
            "id": self.id,
            "stage": self.stage.value,
            "verdict": self.verdict.value,
            "controls": list(self.controls),
            "decisions": list(self.decisions),
            "scores": self.scores,
            "latency_ms": round(self.latency_ms, 3),
            "fired": list(self.fired),
        }
        if self.redacted_text is not None:
            out["redacted_text"] = self.redacted_text
        return out


def parse_stage(value: object) -> Stage:
    """A scan stage from its name, or ``InvalidRequest`` naming the choices."""
    choices = ", ".join(s.value for s in SCAN_STAGES)
    if not isinstance(value, str) or value not in {s.value for s in SCAN_STAGES}:
        raise InvalidRequest(f"stage: expected one of {choices}, got {value!r}", hint=_HINT)
    return Stage(value)


class ScanService:
    """Scans texts with one compiled charter; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._redactor: Any = None

    def scan(
        self, row_id: str, text: str, stage: Stage, base: RequestContext | None = None
    ) -> ScanRow:
        """Evaluate ``text`` at ``stage`` (input, output or untrusted) and describe the result."""
        if stage not in SCAN_STAGES:
            raise InvalidRequest(f"cannot scan at stage {stage.value}", hint=_HINT)
        ctx = replace(base or RequestContext(stage), stage=stage, text=text)
        start = time.perf_counter()
        evaluation = self.engine.evaluate(ctx)
        redacted = self._redacted(text, stage, evaluation)
        latency_ms = (time.perf_counter() - start) * 1e3
        fired = [v for v in evaluation.verdicts if v.action is not Action.ALLOW]
        return ScanRow(
            id=row_id,
            stage=stage,
            verdict=evaluation.action,
            controls=tuple(v.control_id for v in fired),
            decisions=tuple(dict.fromkeys(d for v in fired for d in v.decision_ids)),
            scores={
                v.control_id: round(v.score, 4) for v in evaluation.verdicts if v.score is not None
            },
            redacted_text=redacted,
            latency_ms=latency_ms,
            fired=tuple(
                {
                    "control": v.control_id,
                    "action": v.action.value,
                    "enforced": v.enforced,
                    "reason": v.reason,
                }
                for v in fired
            ),
        )

    def _redacted(self, text: str, stage: Stage, evaluation: Evaluation) -> str | None:
        """The text as it would travel on, where an enforced redact applied; otherwise None.

        Input and untrusted content get the gateway's placeholders (``<EMAIL_ADDRESS_1>``) from a
        vault that lives only for this call, so originals are never returned; answers are masked
        with ``[redacted]``, as the gateway masks them.
        """
        if evaluation.action is not Action.REDACT:
            return None
        from charter.gateway.guarding import mask

        if stage is Stage.OUTPUT:
            return mask(text, evaluation)
        from charter.guards.redaction import RedactionVault, Redactor

        if self._redactor is None:
            self._redactor = Redactor([])
        spans = [
            s
            for v in evaluation.verdicts
            if v.enforced and v.action is Action.REDACT
            for s in v.spans
        ]
        return str(self._redactor.redact_spans(text, spans, RedactionVault()).text)


def parse_rows(body: Any) -> tuple[Stage, list[tuple[str, str]]]:
    """The stage and ``(id, text)`` rows of an API body, or ``InvalidRequest`` saying why not."""
    if not isinstance(body, dict):
        raise InvalidRequest("the scan body must be a JSON object", hint=_HINT)
    unknown = set(body) - {"stage", "rows", "text"}
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}", hint=_HINT)
    stage = parse_stage(body.get("stage", "input"))
    if "text" in body:
        raw_rows: Any = [{"id": "0", "text": body["text"]}]
        if "rows" in body:
            raise InvalidRequest("send either text or rows, not both", hint=_HINT)
    else:
        raw_rows = body.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise InvalidRequest("rows: expected a non-empty list", hint=_HINT)
    if len(raw_rows) > MAX_ROWS:
        raise InvalidRequest(
            f"rows: at most {MAX_ROWS} per call, got {len(raw_rows)}",
            hint="split the batch, or use `charter scan --input rows.jsonl`",
        )
    return stage, [row_of(r, i) for i, r in enumerate(raw_rows)]


def row_of(raw: Any, index: int) -> tuple[str, str]:
    """One ``{"id", "text"}`` row; the id defaults to the row's index."""
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise InvalidRequest(f"rows[{index}]: expected {{'id': ..., 'text': '...'}}", hint=_HINT)
    row_id = raw.get("id", index)
    if not isinstance(row_id, str | int) or isinstance(row_id, bool):
        raise InvalidRequest(f"rows[{index}].id: expected a string or an integer", hint=_HINT)
    return str(row_id), raw["text"]


_HINT = 'send {"stage": "input"|"output"|"untrusted", "rows": [{"id": "1", "text": "..."}]}'


def routes(gateway: Any) -> list[Route]:
    """``POST /v1/charter/scan`` for ``gateway`` (a ``charter.gateway.service.Gateway``).

    Authenticated with a virtual key, like every ``/v1`` route; the caller's principal chain is in
    the context, so controls scoped to principals apply as they would on a chat request.
    """
    from charter.gateway.app import bearer, error_response, read_json

    scanner = ScanService(gateway.engine)

    async def scan(request: Request) -> Response:
        try:
            info = await gateway.authenticate(bearer(request))
            stage, rows = parse_rows(await read_json(request, "scan"))
            base = RequestContext(stage, principals=gateway.engine.principals_of(info.principal))

            def run() -> list[dict[str, Any]]:
                return [scanner.scan(i, t, stage, base).to_dict() for i, t in rows]

            # Scanning is CPU work: off the event loop, so a large batch does not stall streams.
            results = await anyio.to_thread.run_sync(run)
            response: Response = JSONResponse(
                {"charter_version": gateway.version, "results": results}
            )
        except CharterError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("scan failed")
            response = error_response(InternalError("the scan failed; this is a bug"))
        return response

    return [Route("/v1/charter/scan", scan, methods=["POST"])]
