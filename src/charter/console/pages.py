"""The console's pages: Starlette endpoints that read the gateway's state and render templates.

Every endpoint goes through ``Console.page`` or ``Console.change``, which resolve the signed
session, check the role table of ``charter.console.auth`` on the server, check the CSRF token of
every POST, and turn a ``CharterError`` into a page that says what went wrong and what to do.
Every change writes an audit record naming the person and the token they signed in with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

import anyio.to_thread
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from charter.audit.checkpoint import Checkpoint
from charter.audit.log import AuditLog, Draft, stored_checkpoints, stored_leaf_bytes
from charter.audit.records import RecordKind
from charter.audit.verify import VerificationReport, build_bundle, verify_log
from charter.budgets import period_bounds
from charter.console import auth, records
from charter.console.auth import Session
from charter.console.charts import stacked_bars, usd
from charter.document.coverage import Coverage, coverage
from charter.document.model import BudgetControl, EvalGateControl, Mode, Period, Role
from charter.errors import (
    CharterError,
    ConfigurationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from charter.evals.gate import GateResult, evaluate_gate, gate_controls
from charter.evals.report import bar_chart, html_report, load_run
from charter.evals.runner import Run
from charter.policy.runtime import members
from charter.policy.verdict import Action
from charter.storage.base import ActionRow, Store

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FORM_BYTES = 64 * 1024
NAV = (
    ("decisions", "Decisions"),
    ("approvals", "Approvals"),
    ("traffic", "Traffic"),
    ("audit", "Audit"),
    ("evals", "Evals"),
    ("spend", "Spend"),
    ("users", "Users"),
)
SECURITY_HEADERS = {
    # No inline script anywhere; htmx is served from /console/static. Inline SVG needs no styles.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
DONE = {  # the one-line confirmation after a change (Post/Redirect/Get), by code
    "approved": "Approved {id}.",
    "rejected": "Rejected {id}.",
    "labelled": "Label saved for {id}.",
    "checkpoint": "Signed a checkpoint over {id} records.",
    "revoked": "Revoked token {id}; its sessions end at their next request.",
}
ACTIVE = {"record.html": "audit", "report.html": "evals", "grade.html": "evals"}
HISTORY_STATUSES = (
    "approved",
    "rejected",
    "expired",
    "executed",
    "reverted",
    "failed",
    "abandoned",
)

Handler = Callable[[Request, Session], Awaitable[Response]]


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("charter.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = usd
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    env.filters["when"] = lambda t: "" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True)
    return env


class Console:
    """The console of one gateway: its state, its templates and its session signer."""

    def __init__(
        self, gateway: Any, *, charter_dir: Path | None = None, reports_dir: Path | None = None
    ) -> None:
        if gateway.audit is None:
            raise ConfigurationError(
                "the console needs the gateway's audit log (every change it makes is recorded)",
                hint="build the gateway with build_services, which opens the audit log",
            )
        self.gateway = gateway
        self.charter = gateway.charter
        self.audit: AuditLog = gateway.audit
        self.store: Store = gateway.audit.store
        self.codec = auth.SessionCodec(auth.session_secret(self.audit.keys.content))
        self.env = _env()
        base = getattr(getattr(gateway, "standards", None), "base_dir", None)
        self.charter_dir = charter_dir or (Path(base) if base is not None else Path.cwd())
        self.reports_dir = reports_dir

    # -- plumbing --------------------------------------------------------------------------------

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking store call on a worker thread."""
        return await anyio.to_thread.run_sync(partial(fn, *args))

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        ok = request.query_params.get("ok", "")
        done = DONE[ok].format(id=request.query_params.get("id", "")) if ok in DONE else None
        body = self.env.get_template(template).render(
            request=request,
            session=session,
            nav=[(k, label) for k, label in NAV if session is not None and session.may_open(k)],
            organization=self.charter.organization,
            version=self.gateway.version,
            done=done,
            active=ACTIVE.get(template, template.removesuffix(".html")),
            **context,
        )
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    async def session(self, request: Request) -> Session | None:
        """The signed-in person, or None (no cookie, a forged or old one, a revoked token)."""
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        found = self.codec.loads(cookie) if cookie else None
        if found is None:
            return None
        tokens = await self.db(self.store.list_console_tokens, found.principal)
        if not any(t.id == found.token_id and t.active for t in tokens):
            return None
        roles = auth.roles_of(self.charter, found.principal)
        return dataclasses.replace(found, roles=roles) if roles else None

    async def form(self, request: Request) -> dict[str, str]:
        """A urlencoded form body (what every console form sends), first value of each field."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequest("the form is too large", hint="send less than 64 KiB")
        try:
            parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest(f"the form could not be read ({exc})") from None
        return {k: v[0] for k, v in parsed.items()}

    def error(self, request: Request, exc: CharterError, session: Session | None) -> HTMLResponse:
        return self.render(request, "error.html", session, status=exc.status, error=exc)

    def endpoint(
        self, page: str | None, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: a session is required, the page's roles are checked on the server,
        every POST must carry the session's CSRF token."""

        async def wrapper(request: Request) -> Response:
            session = None
            try:
                session = await self.session(request)
                if session is None:
                    target = request.url.path
                    if request.method == "GET" and request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(
                        "/console/login?next=" + quote(target, safe=""), status_code=303
                    )
                if page is not None:
                    auth.require_page(session.roles, page)
                if request.method == "POST":
                    form = await self.form(request)
                    presented = form.get("csrf") or request.headers.get("x-csrf-token")
                    if not auth.csrf_ok(session, presented):
                        raise PermissionDenied(
                            "the form's security token is missing or stale",
                            hint="reload the page and submit the form again",
                            code="csrf_failed",
                        )
                    request.state.form = form
                response = await handler(request, session)
            except CharterError as exc:
                return self.error(request, exc, session)
            except Exception:
                log.exception("console page %s failed", request.url.path)
                from charter.errors import InternalError

                return self.error(
                    request,
                    InternalError("the console failed on this page; this is a bug"),
                    session,
                )
            return response

        return wrapper

    async def record(
        self,
        session: Session,
        kind: RecordKind,
        event: str,
        *,
        reason: str | None = None,
        request_id: str | None = None,
        action: Action | None = None,
        decisions: tuple[str, ...] = (),
        controls: tuple[str, ...] = (),
        versioned: bool = True,
        details: Mapping[str, str | int | bool | None] | None = None,
    ) -> int | None:
        """The audit record of a change made in the console (committed before we answer)."""
        return await self.audit.append(
            Draft(
                kind=kind,
                principal=session.principal,
                request_id=request_id,
                charter_version=self.gateway.version if versioned else None,
                control_ids=controls,
                decision_ids=decisions,
                action=action,
                reason=reason,
                details={
                    "event": f"console.{event}",
                    "console_token": session.token_id,
                    **(details or {}),
                },
            )
        )

    # -- sign-in ---------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        token = self.codec.login_token()
        response = self.render(
            request,
            "login.html",
            None,
            csrf=token,
            next=_safe_next(request.query_params.get("next")),
        )
        self._cookie(request, response, auth.LOGIN_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        form: dict[str, str] = {}
        try:
            form = await self.form(request)
            if not self.codec.login_ok(request.cookies.get(auth.LOGIN_COOKIE), form.get("csrf")):
                raise PermissionDenied(
                    "the sign-in form expired", hint="reload the page and sign in again"
                )
            row = await self.db(auth.check_token, self.store, self.charter, form.get("token", ""))
        except CharterError as exc:
            token = self.codec.login_token()
            page = self.render(
                request,
                "login.html",
                None,
                status=exc.status,
                csrf=token,
                next=_safe_next(form.get("next")),
                error=exc,
            )
            self._cookie(request, page, auth.LOGIN_COOKIE, token, 3600)
            return page
        session = Session(row.principal_id, row.id, auth.new_csrf())
        await self.record(
            session,
            RecordKind.VERDICT,
            "sign_in",
            action=Action.ALLOW,
            reason=f"{row.principal_id} signed in to the console",
        )
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        self._cookie(
            request, response, auth.SESSION_COOKIE, self.codec.dumps(session), self.codec.max_age_s
        )
        response.delete_cookie(auth.LOGIN_COOKIE, path="/console")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        await self.record(
            session,
            RecordKind.VERDICT,
            "sign_out",
            action=Action.ALLOW,
            reason=f"{session.principal} signed out of the console",
        )
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/console")
        return response

    def _cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # -- decisions -------------------------------------------------------------------------------

    async def decisions(self, request: Request, session: Session) -> Response:
        now = dt.datetime.now(dt.UTC)
        cov = coverage(self.charter)
        serves = {c.id: tuple(c.serves) for c in self.charter.controls}
        figures = await self.db(records.live_figures, self.store, now, serves)
        runs = await self.db(records.eval_records, self.store)
        gates = records.last_gate_by_decision(runs, self.gateway.version)
        current = next(
            (r for r in runs if r.charter_version == self.gateway.version and r.event == "run"),
            None,
        )
        rows = [
            {
                "d": row.decision,
                "status": row.status.value,
                "uncovered": row.status is Coverage.UNCOVERED,
                "controls": row.controls,
                "unknown": row.unknown,
                "overdue": row.decision.review_by < now.date(),
                "figures": figures.get(row.decision.id, records.DecisionFigures()),
                "gate": gates.get(row.decision.id),
            }
            for row in cov.decisions
        ]
        return self.render(
            request,
            "decisions.html",
            session,
            rows=rows,
            orphans=cov.orphans,
            gate=current,
            uncovered=sum(r["uncovered"] for r in rows),
        )

    # -- approvals -------------------------------------------------------------------------------

    def _service(self) -> Any:
        if self.gateway.approvals is None:
            raise NotFound(
                "this charter has no tool policies or escalating guards, so nothing waits for "
                "approval",
                hint="add a tool_policy control or a guard escalate band, and an approval control",
            )
        return self.gateway.approvals

    def may_decide(self, session: Session, row: ActionRow) -> bool:
        """A console-side check: a non-auditor role of the person is one the approval accepts."""
        wanted = set(json.loads(row.reviewer_roles_json))
        held = {str(r) for r in session.roles if r is not Role.AUDITOR}
        return session.may_change("decide") and bool(held & wanted)

    async def approvals(self, request: Request, session: Session) -> Response:
        service = self._service() if self.gateway.approvals is not None else None
        pending = await service.list_pending() if service is not None else []
        history = []
        if service is not None:
            rows = await self.db(self.store.list_actions, list(HISTORY_STATUSES), 200)
            history = [r for r in rows if r.approval_id is not None][:50]
        return self.render(
            request,
            "approvals.html",
            session,
            pending=[_action_view(r, self.may_decide(session, r)) for r in pending],
            history=[_action_view(r, False) for r in history],
            has_tools=service is not None,
        )

    async def decide(self, request: Request, session: Session) -> Response:
        auth.require_change(session.roles, "decide")
        service = self._service()
        approval_id = request.path_params["approval_id"]
        form: dict[str, str] = request.state.form
        verb = form.get("decision")
        if verb not in ("approve", "reject"):
            raise InvalidRequest("choose approve or reject", hint="use the buttons on the page")
        row = await service.get_approval(approval_id)
        if not self.may_decide(session, row):
            raise PermissionDenied(
                f"approval {approval_id} needs one of the roles "
                f"{', '.join(json.loads(row.reviewer_roles_json))}; you hold "
                f"{', '.join(sorted(map(str, session.roles)))}",
                hint="the approval control of the charter says who may decide",
            )
        reason = form.get("reason", "").strip()
        act = service.approve if verb == "approve" else service.reject
        done = await act(approval_id, session.principal, reason)
        await self.record(
            session,
            RecordKind.APPROVAL,
            verb,
            reason=reason,
            request_id=done.id,
            action=Action.ALLOW if verb == "approve" else Action.BLOCK,
            decisions=tuple(json.loads(done.decision_ids_json)),
            controls=tuple(c for c in (done.control_id, done.approval_control_id) if c),
            details={"approval_id": approval_id, "tool": done.tool, "status": done.status},
        )
        code = "approved" if verb == "approve" else "rejected"
        return RedirectResponse(f"/console/approvals?ok={code}&id={quote(approval_id)}", 303)

    # -- traffic ---------------------------------------------------------------------------------

    async def traffic(self, request: Request, session: Session) -> Response:
        query = records.Query.from_params(request.query_params)
        rows = await self.db(records.traffic, self.store, query, 100)
        return self.render(
            request,
            "traffic.html",
            session,
            query=query,
            rows=rows,
            principals=[p.id for p in self.charter.principals],
            decisions=[d.id for d in self.charter.decisions],
            verdicts=[a.value for a in Action],
        )

    # -- audit -----------------------------------------------------------------------------------

    def _latest_checkpoint(self) -> Checkpoint | None:
        found = stored_checkpoints(self.store)
        return max(found, key=lambda c: c.tree_size) if found else None

    async def audit_page(
        self, request: Request, session: Session, report: VerificationReport | None = None
    ) -> Response:
        query = records.Query.from_params(request.query_params)
        found = await self.db(partial(records.search, self.store, query, limit=100))
        size = await self.db(self.store.audit_size)
        checkpoint = await self.db(self._latest_checkpoint)
        return self.render(
            request,
            "audit.html",
            session,
            query=query,
            found=found,
            size=size,
            checkpoint=checkpoint,
            report=report,
            kinds=[k.value for k in RecordKind],
            verdicts=[a.value for a in Action],
        )

    async def audit_record(self, request: Request, session: Session) -> Response:
        index = int(request.path_params["index"])
        checkpoint = await self.db(self._latest_checkpoint)
        proof = await self.db(records.inclusion_proof, self.store, index, checkpoint)
        return self.render(request, "record.html", session, proof=proof, checkpoint=checkpoint)

    def _verify(self) -> VerificationReport:
        return verify_log(
            stored_leaf_bytes(self.store),
            stored_checkpoints(self.store),
            self.audit.keys.signing.public_key,
        )

    async def verify(self, request: Request, session: Session) -> Response:
        auth.require_change(session.roles, "verify")
        report = await self.db(self._verify)
        return await self.audit_page(request, session, report)

    async def checkpoint(self, request: Request, session: Session) -> Response:
        auth.require_change(session.roles, "checkpoint")
        # The request is recorded first, so the checkpoint covers its own record.
        await self.record(
            session,
            RecordKind.VERDICT,
            "checkpoint",
            action=Action.ALLOW,
            reason=f"{session.principal} signed a checkpoint from the console",
        )
        signed = await self.db(self.audit.checkpoint)
        return RedirectResponse(f"/console/audit?ok=checkpoint&id={signed.tree_size}", 303)

    async def export(self, request: Request, session: Session) -> Response:
        def bundle() -> dict[str, Any]:
            return build_bundle(
                stored_leaf_bytes(self.store),
                stored_checkpoints(self.store),
                self.audit.keys.signing.public_key,
            )

        data = await self.db(bundle)
        size = data.get("tree_size", len(data.get("records", [])))
        return JSONResponse(
            data,
            headers={
                **SECURITY_HEADERS,
                "content-disposition": f'attachment; filename="charter-audit-{size}.json"',
            },
        )

    # -- evals -----------------------------------------------------------------------------------

    def _gate(self) -> EvalGateControl | None:
        gates = gate_controls(self.charter)
        return gates[0] if gates else None

    def _suite_path(self) -> Path | None:
        gate = self._gate()
        return None if gate is None else self.charter_dir / gate.settings.suite

    def _baseline_path(self) -> Path | None:
        gate = self._gate()
        if gate is None or gate.settings.baseline is None:
            return None
        return self.charter_dir / gate.settings.baseline

    def reports(self) -> dict[str, tuple[Path, Run]]:
        """Eval report files (``charter eval --json``) beside the suite and in ``reports_dir``,
        newest first, by file name (pages look reports up by this name, never by a path)."""
        suite = self._suite_path()
        folders = [d for d in (suite.parent if suite else None, self.reports_dir) if d is not None]
        files = sorted(
            {f for d in folders if d.is_dir() for f in d.glob("*.json")},
            key=lambda f: f.stat().st_mtime,
            reverse=True,
        )
        out: dict[str, tuple[Path, Run]] = {}
        for file in files:
            try:
                out.setdefault(file.name, (file, load_run(file)))
            except CharterError:
                continue  # another JSON file: not a run
        return out

    async def evals(self, request: Request, session: Session) -> Response:
        runs = await self.db(records.eval_records, self.store)
        reports = await self.db(self.reports)
        gate = self._gate()
        baseline = self._baseline_path()
        return self.render(
            request,
            "evals.html",
            session,
            runs=runs,
            reports=[(name, path, run) for name, (path, run) in reports.items()],
            gate=gate,
            baseline=baseline.name if baseline is not None and baseline.exists() else None,
        )

    def _report(self, name: str) -> tuple[Run, GateResult | None, Run | None]:
        found = self.reports().get(name)
        if found is None:
            raise NotFound(f"no eval report named {name!r}", hint="pick one on the Evals page")
        path, run = found
        gate = self._gate()
        baseline_path = self._baseline_path()
        baseline = None
        if baseline_path is not None and baseline_path.exists() and baseline_path != path:
            pinned = load_run(baseline_path)
            # As `charter eval` does: a policy run and a gateway run measure different things.
            baseline = pinned if pinned.mode == run.mode else None
        result = None
        if gate is not None:
            result = evaluate_gate(
                run, gate.settings.thresholds, baseline=baseline, control_id=gate.id
            )
        return run, result, baseline

    async def report(self, request: Request, session: Session) -> Response:
        from charter.evals.metrics import summarize
        from charter.evals.report import BLUE, GREEN, RED

        run, gate, baseline = await self.db(self._report, request.path_params["name"])
        summary = summarize(run)
        charts = [
            bar_chart(
                "Per decision",
                [
                    (
                        d,
                        [
                            ("attacks stopped", r.catch_rate, GREEN),
                            ("legitimate refused", r.false_refusal_rate, RED),
                        ],
                    )
                    for d, r in summary.by_decision.items()
                ],
            ),
            bar_chart(
                "Per category",
                [
                    (
                        c,
                        [
                            ("pass rate", r.pass_rate, BLUE),
                            ("attacks stopped", r.catch_rate, GREEN),
                            ("legitimate refused", r.false_refusal_rate, RED),
                        ],
                    )
                    for c, r in summary.by_category.items()
                ],
            ),
        ]
        return self.render(
            request,
            "report.html",
            session,
            name=request.path_params["name"],
            run=run,
            gate=gate,
            baseline=baseline,
            summary=summary,
            # bar_chart escapes every label and value it writes into the SVG.
            charts=[Markup(c) for c in charts],
            results=sorted(run.results, key=lambda r: (r.passed, r.case_id)),
        )

    async def report_html(self, request: Request, session: Session) -> Response:
        run, gate, baseline = await self.db(self._report, request.path_params["name"])
        headers = {
            **SECURITY_HEADERS,
            # The standalone report carries its own <style>; it has no script at all.
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; frame-ancestors 'none'",
        }
        return HTMLResponse(html_report(run, gate, baseline), headers=headers)

    def _grading(self, name: str | None) -> dict[str, Any]:
        from charter.evals.grading import load_labels
        from charter.evals.suite import load_suite

        suite_path = self._suite_path()
        if suite_path is None:
            raise NotFound("the charter has no eval_gate control, so there is no suite to grade")
        suite = load_suite(suite_path)
        reports = self.reports()
        if not reports:
            raise NotFound(
                "there is no eval report with answers to grade yet",
                hint="run `charter eval --json FILE` and put the file beside the suite",
            )
        chosen = name if name in reports else next(iter(reports))
        _, run = reports[chosen]
        prompts = {
            c.id: next((m.content for m in reversed(c.messages) if m.role == "user"), "")
            for c in suite.cases
        }
        labels = load_labels(suite.labels_dir())
        return {
            "report": chosen,
            "names": list(reports),
            "cases": [
                (r, prompts.get(r.case_id, ""))
                for r in run.results
                if r.answer is not None and r.case_id in prompts
            ],
            "labels": {(lb.case_id, lb.grader): lb for lb in labels},
            "labels_dir": suite.labels_dir(),
            "labels_shown": _relative(suite.labels_dir(), self.charter_dir),
            "suite": suite,
            "run": run,
        }

    async def grade_page(self, request: Request, session: Session) -> Response:
        data = await self.db(self._grading, request.query_params.get("report"))
        return self.render(request, "grade.html", session, **data)

    async def grade(self, request: Request, session: Session) -> Response:
        from charter.evals.grading import add_label

        auth.require_change(session.roles, "label")
        form: dict[str, str] = request.state.form
        data = await self.db(self._grading, form.get("report"))
        if data["labels_dir"] is None:
            raise ConfigurationError(
                "the eval suite names no labels directory",
                hint="add `labels: labels` to the suite file",
            )
        case_id = form.get("case_id", "")
        found = next(((r, p) for r, p in data["cases"] if r.case_id == case_id), None)
        if found is None:
            raise NotFound(f"no answer of case {case_id!r} in report {data['report']}")
        result, prompt = found
        if form.get("acceptable") not in ("yes", "no"):
            raise InvalidRequest("say whether the answer is acceptable", hint="choose yes or no")
        label = await self.db(
            partial(
                add_label,
                data["labels_dir"],
                self.charter,
                case_id=case_id,
                prompt=prompt,
                answer=result.answer or "",
                acceptable=form["acceptable"] == "yes",
                reason=form.get("reason", ""),
                grader=session.principal,
                category=result.category.value,
                decisions=result.decisions,
            )
        )
        # Not tied to the charter version: a label is about an answer, and the eval gate reads
        # this version's eval_run records as runs and overrides.
        await self.record(
            session,
            RecordKind.EVAL_RUN,
            "label",
            reason=label.reason,
            request_id=case_id,
            action=Action.ALLOW if label.acceptable else Action.BLOCK,
            decisions=tuple(label.decisions),
            versioned=False,
            details={"run_id": data["run"].run_id, "acceptable": label.acceptable},
        )
        target = (
            f"/console/evals/grade?report={quote(data['report'])}&ok=labelled&id={quote(case_id)}"
        )
        return RedirectResponse(target, 303)

    # -- spend -----------------------------------------------------------------------------------

    def _spend(self, now: dt.datetime) -> dict[str, Any]:
        budgets = []
        for control in self.charter.controls:
            if not isinstance(control, BudgetControl) or control.mode is Mode.OFF:
                continue
            for limit in control.settings.limits:
                start, end = period_bounds(limit.period, now.timestamp())
                who = members(self.charter, limit.principal)
                used = sum(self.store.spend_between(p, start, end) for p in who)
                cap = round(limit.usd * 1_000_000)
                budgets.append(
                    {
                        "control": control,
                        "principal": limit.principal,
                        "period": limit.period.value,
                        "start": start,
                        "cap": cap,
                        "used": used,
                        "share": used / cap if cap else 1.0,
                        "members": who,
                    }
                )
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        days = [today - dt.timedelta(days=n) for n in range(13, -1, -1)]
        callers = [p.id for p in self.charter.principals if p.kind != "team"]
        series = []
        for principal in callers:
            values = [
                self.store.spend_between(principal, d, d + dt.timedelta(days=1)) for d in days
            ]
            if any(values):
                series.append((principal, values))
        labels = [d.strftime("%Y-%m-%d") for d in days]
        month = period_bounds(Period.MONTH, now.timestamp())
        day = (today, today + dt.timedelta(days=1))

        def spent(principal: str, span: tuple[dt.datetime, dt.datetime]) -> int:
            return sum(self.store.spend_between(m, *span) for m in members(self.charter, principal))

        per_principal = [
            (p.id, p.kind, spent(p.id, day), spent(p.id, month)) for p in self.charter.principals
        ]
        return {
            "budgets": budgets,
            "chart": Markup(stacked_bars("Spend per day, last 14 days", labels, series)),
            "series": series,
            "days": labels,
            "per_principal": per_principal,
        }

    async def spend(self, request: Request, session: Session) -> Response:
        data = await self.db(self._spend, dt.datetime.now(dt.UTC))
        return self.render(request, "spend.html", session, **data)

    # -- users -----------------------------------------------------------------------------------

    async def users(
        self, request: Request, session: Session, issued: tuple[str, Any] | None = None
    ) -> Response:
        tokens = await self.db(self.store.list_console_tokens)
        people = [p for p in self.charter.principals if p.kind == "user"]
        return self.render(
            request, "users.html", session, tokens=tokens, people=people, issued=issued
        )

    async def issue(self, request: Request, session: Session) -> Response:
        auth.require_change(session.roles, "tokens")
        form: dict[str, str] = request.state.form
        token, row = await self.db(
            auth.issue_token,
            self.store,
            self.charter,
            form.get("principal", ""),
            form.get("description", "")[:200],
        )
        await self.record(
            session,
            RecordKind.KEY_CHANGE,
            "token_issued",
            reason=f"console token {row.id} issued for {row.principal_id}",
            details={"token_id": row.id, "for": row.principal_id},
        )
        return await self.users(request, session, issued=(token, row))

    async def revoke(self, request: Request, session: Session) -> Response:
        auth.require_change(session.roles, "tokens")
        token_id = request.path_params["token_id"]
        revoked = await self.db(self.store.revoke_console_token, token_id, dt.datetime.now(dt.UTC))
        if not revoked:
            raise NotFound(f"no active console token {token_id!r}", hint="see the list below")
        await self.record(
            session,
            RecordKind.KEY_CHANGE,
            "token_revoked",
            reason=f"console token {token_id} revoked",
            details={"token_id": token_id},
        )
        return RedirectResponse(f"/console/users?ok=revoked&id={quote(token_id)}", 303)


def _relative(path: Path | None, base: Path) -> str:
    """A path as the charter names it (relative to the charter's folder) when it can be."""
    if path is None:
        return "(none: the suite names no labels directory)"
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _safe_next(target: str | None) -> str:
    """Only a console path: a sign-in link must not send anyone elsewhere."""
    if (
        target
        and target.startswith("/console/")
        and not any(bad in target for bad in ("//", "\\", "://"))
    ):
        return target
    return "/console/decisions"


def _action_view(row: ActionRow, may_decide: bool) -> dict[str, Any]:
    facts = json.loads(row.arguments_json)
    return {
        "row": row,
        "content": facts if row.is_content else None,  # escalated content: stage, scores, digest
        "arguments": {} if row.is_content else facts,
        "decisions": json.loads(row.decision_ids_json),
        "reviewers": json.loads(row.reviewer_roles_json),
        "may_decide": may_decide,
    }
