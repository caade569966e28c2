"""The dashboard as a Starlette application: its pages, its actions and the guard in front of
them (credentials, CSRF, read-only, security headers).

Pages are GETs and change nothing. An action is two steps: its button on the job page opens a
confirmation page (a GET), whose form POSTs the action with the CSRF token; the POST does the
action through :mod:`agenda_decl.operations` and redirects (303) to what it changed. With
``read_only`` no action is offered and every POST is refused (403).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import attrs
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenda_decl._secrets import mask_text
from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig
from agenda_decl.dashboard import render
from agenda_decl.dashboard.actions import ACTIONS, ActionDone, do_action
from agenda_decl.dashboard.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    Credentials,
    CsrfGuard,
    is_loopback,
)
from agenda_decl.dashboard.views import (
    PAGE_SIZE,
    STATE_FILTERS,
    FilterError,
    JobFilters,
    job_page,
    list_jobs,
    overview,
    schedules,
)
from agenda_decl.errors import AgendaError, JobNotFoundError
from agenda_decl.operations import OperationRefusedError

__all__ = ["DashboardSettings", "create_app"]

_HERE = Path(__file__).parent
#: Bytes a POST body may have: the forms send a token, a reason and little else.
_MAX_FORM = 16_384


@attrs.define(kw_only=True, frozen=True)
class DashboardSettings:
    read_only: bool = False
    credentials: Credentials = attrs.field(factory=Credentials)
    #: Seconds between the page's own refreshes (0: none).
    refresh_seconds: int = 5


@attrs.define(kw_only=True)
class _Dashboard:
    agenda: Agenda
    config: AgendaConfig
    settings: DashboardSettings
    csrf: CsrfGuard
    templates: Jinja2Templates

    def page(self, request: Request, name: str, context: dict[str, Any],
             status: int = 200) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE) or CsrfGuard.new_nonce()
        response = self.templates.TemplateResponse(request, name, {
            "page_name": "", **context, "read_only": self.settings.read_only,
            "csrf_field": CSRF_FIELD, "csrf_token": self.csrf.token_for(nonce),
            "refresh": self.settings.refresh_seconds, "owner": self.config.owner,
            "now": self.agenda.clock.now(), "user": request.scope.get("user_name"),
        }, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict",
                                path="/")
        return response

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.page(request, "error.html", {"title": title, "message": message},
                         status=status)


def create_app(agenda: Agenda, config: AgendaConfig,
               settings: DashboardSettings | None = None) -> ASGIApp:
    """The dashboard over ``agenda`` (built from ``config``). The app connects it at start
    (``ready``; nothing when it already is) and stops it at shutdown."""
    settings = settings or DashboardSettings()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined)
    render.install(environment)
    dashboard = _Dashboard(agenda=agenda, config=config, settings=settings, csrf=CsrfGuard(),
                           templates=Jinja2Templates(env=environment))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await agenda.ready()
        try:
            yield
        finally:
            await agenda.stop()

    def route(path: str, handler: Callable[[_Dashboard, Request], Awaitable[Response]],
              methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _answer(dashboard, request, handler)
        return Route(path, endpoint, methods=methods)

    app = Starlette(routes=[
        route("/", _overview, ["GET"]),
        route("/jobs", _jobs, ["GET"]),
        route("/jobs/{id}", _job, ["GET"]),
        route("/jobs/{id}/{action}", _confirm, ["GET"]),
        route("/jobs/{id}/{action}", _act, ["POST"]),
        route("/schedules", _schedules, ["GET"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ], lifespan=lifespan)
    return _Guard(app, dashboard)


async def _answer(dashboard: _Dashboard, request: Request,
                  handler: Callable[[_Dashboard, Request], Awaitable[Response]]) -> Response:
    """The handler's page, or the page of the error it met (the message masked)."""
    try:
        return await handler(dashboard, request)
    except JobNotFoundError as error:
        return dashboard.error(request, 404, "Not found", str(error))
    except FilterError as error:
        return dashboard.error(request, 400, "Bad filter", str(error))
    except AgendaError as error:
        return dashboard.error(request, 503, "The store did not answer", mask_text(str(error)))


async def _overview(dashboard: _Dashboard, request: Request) -> Response:
    shown = await overview(dashboard.agenda, dashboard.config)
    return dashboard.page(request, "overview.html", {"page_name": "overview", **shown})


async def _jobs(dashboard: _Dashboard, request: Request) -> Response:
    try:
        filters = JobFilters.of(request.query_params)
        problem = None
    except FilterError as error:
        filters, problem = JobFilters(), str(error)
    jobs, total, exact = (await list_jobs(dashboard.agenda, dashboard.config, filters)
                          if problem is None else ([], 0, True))
    return dashboard.page(request, "jobs.html", {
        "page_name": "jobs", "jobs": jobs, "total": total, "total_exact": exact,
        "filters": filters,
        "problem": problem, "states": STATE_FILTERS, "page_size": PAGE_SIZE,
        "raw": dict(request.query_params),
        "names": sorted(dashboard.config.jobs), "done": request.query_params.get("done"),
        "link": lambda **changes: "/jobs?" + urlencode(filters.query(**changes)),
    }, status=400 if problem else 200)


async def _job(dashboard: _Dashboard, request: Request, *, problem: str | None = None,
               status: int = 200) -> Response:
    shown = await job_page(dashboard.agenda, dashboard.config, request.path_params["id"])
    return dashboard.page(request, "job.html", {
        "page_name": "jobs", **shown, "problem": problem,
        "done": request.query_params.get("done"), "of": request.query_params.get("of"),
    }, status=status)


async def _confirm(dashboard: _Dashboard, request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS or dashboard.settings.read_only:
        return dashboard.error(request, 404, "Not found", "no such page")
    shown = await job_page(dashboard.agenda, dashboard.config, request.path_params["id"])
    return dashboard.page(request, "confirm.html", {
        "page_name": "jobs", **shown, "action": action, "action_text": ACTIONS[action]})


async def _act(dashboard: _Dashboard, request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS:
        return dashboard.error(request, 404, "Not found", "no such action")
    form = request.scope["agenda_decl_form"]
    try:
        done = await do_action(dashboard.agenda, dashboard.config, action,
                               request.path_params["id"], reason=form.get("reason", ""),
                               user=request.scope.get("user_name"))
    except OperationRefusedError as error:
        return await _job(dashboard, request, problem=str(error), status=409)
    return RedirectResponse(_after(done), status_code=303)


def _after(done: ActionDone) -> str:
    if done.job_id is None:
        return "/jobs?" + urlencode({"done": done.code})
    query = {"done": done.code, **({"of": done.of} if done.of else {})}
    return f"/jobs/{quote(done.job_id, safe='')}?" + urlencode(query)


async def _schedules(dashboard: _Dashboard, request: Request) -> Response:
    shown = await schedules(dashboard.agenda, dashboard.config)
    return dashboard.page(request, "schedules.html", {"page_name": "schedules", **shown})


class _Guard:
    """In front of every route: credentials, then for a POST read-only and the CSRF token
    (the form is read here, once, and handed on), and security headers on every answer."""

    def __init__(self, app: ASGIApp, dashboard: _Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        settings = self.dashboard.settings
        if not settings.credentials.required and not is_loopback(request.url.hostname or ""):
            # Without credentials only this machine may ask, by a loopback name: a page of
            # another site that had its name resolve to 127.0.0.1 (DNS rebinding) is refused.
            await _refuse(scope, receive, send, 400, "this dashboard answers to a loopback "
                          "address only (127.0.0.1, localhost, [::1])")
            return
        user = settings.credentials.who(request.headers.get("authorization"))
        if user is None:
            await _refuse(scope, receive, send, 401, "credentials needed", headers={
                "WWW-Authenticate": 'Basic realm="agenda-decl dashboard", charset="UTF-8"'})
            return
        scope["user_name"] = user
        if request.method == "POST":
            refusal = await self._check_post(request, scope)
            if refusal is not None:
                await _refuse(scope, receive, send, 403, refusal)
                return
        await self.app(scope, receive, _with_headers(send))

    async def _check_post(self, request: Request, scope: Scope) -> str | None:
        if self.dashboard.settings.read_only:
            return "this dashboard is read-only: it takes no actions"
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return "the form comes from another site"
        body = await request.body()
        if len(body) > _MAX_FORM:
            return "the form is too large"
        form = {key: values[0] for key, values in
                parse_qs(body.decode("utf-8", "replace")).items()}
        if not self.dashboard.csrf.valid(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return ("the form's CSRF token is missing or does not match (the dashboard may "
                    "have restarted): reload the page and try again")
        scope["agenda_decl_form"] = form
        return None


_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make a form's Origin "null"
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_HEADERS]
        await send(message)
    return sending


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str,
                  headers: dict[str, str] | None = None) -> None:
    response = PlainTextResponse(f"{status}: {text}\n", status_code=status, headers=headers)
    await response(scope, receive, _with_headers(send))
