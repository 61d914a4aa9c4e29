"""The web console under ``/console``: decisions, approvals, traffic, audit, evals and spend for
the people who own the decisions, with the charter's roles checked on the server.

Server-rendered pages (Jinja2) with htmx as light progressive enhancement; every page works
without script. Wire it into a gateway with::

    routes = [*routes, *charter.console.routes(gateway)]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from charter.console.auth import issue_token
from charter.console.pages import Console

STATIC = Path(__file__).parent / "static"


def routes(
    gateway: Any, *, charter_dir: Path | None = None, reports_dir: Path | None = None
) -> list[Route | Mount]:
    """The console's routes for ``gateway`` (a ``charter.gateway.service.Gateway`` with an
    audit log). ``charter_dir`` is where the charter's relative paths (the eval suite, the
    baseline) start, by default the charter file's folder; ``reports_dir`` is an extra folder of
    eval report files (``charter eval --json``)."""
    c = Console(gateway, charter_dir=charter_dir, reports_dir=reports_dir)

    async def home(request: Any) -> Any:
        from starlette.responses import RedirectResponse

        return RedirectResponse("/console/decisions", status_code=303)

    def get(path: str, page: str | None, handler: Any) -> Route:
        return Route(path, c.endpoint(page, handler), methods=["GET"])

    def post(path: str, page: str | None, handler: Any) -> Route:
        return Route(path, c.endpoint(page, handler), methods=["POST"])

    return [
        Route("/console", home, methods=["GET"]),
        Route("/console/", home, methods=["GET"]),
        Route("/console/login", c.login_page, methods=["GET"]),
        Route("/console/login", c.login, methods=["POST"]),
        post("/console/logout", None, c.logout),
        get("/console/decisions", "decisions", c.decisions),
        get("/console/approvals", "approvals", c.approvals),
        post("/console/approvals/{approval_id}", "approvals", c.decide),
        get("/console/traffic", "traffic", c.traffic),
        get("/console/audit", "audit", c.audit_page),
        get("/console/audit/records/{index:int}", "audit", c.audit_record),
        post("/console/audit/verify", "audit", c.verify),
        post("/console/audit/checkpoint", "audit", c.checkpoint),
        get("/console/audit/export", "audit", c.export),
        get("/console/evals", "evals", c.evals),
        get("/console/evals/reports/{name}", "evals", c.report),
        get("/console/evals/reports/{name}/html", "evals", c.report_html),
        get("/console/evals/grade", "evals", c.grade_page),
        post("/console/evals/grade", "evals", c.grade),
        get("/console/spend", "spend", c.spend),
        get("/console/users", "users", c.users),
        post("/console/users/tokens", "users", c.issue),
        post("/console/users/tokens/{token_id}/revoke", "users", c.revoke),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
    ]


__all__ = ["Console", "issue_token", "routes"]
