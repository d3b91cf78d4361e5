"""The console's ASGI app: Starlette + Jinja2 templates, sessions, login, CSRF, security headers.

``create_app(admin, settings, secret, users_path)`` builds it; :mod:`gateway.console.server` serves it with
uvicorn inside the gateway process. The pages live in :mod:`gateway.console.views`. Who may do what:

- nobody unauthenticated: every page but ``/login`` and ``/static`` redirects to the login page;
- ``viewer``: every page that reads (overview, studies, trails, quarantine, rules, audit);
- ``admin``: also replay, discard, rule save and explain (which shows an uploaded file's own values).

Sessions are signed cookies (HttpOnly, SameSite=Strict, Secure under TLS) holding the user name and the CSRF
token only; the role is read from the users file at every request, so a demotion applies at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console import views
from gateway.console.security import LoginLimiter, SecurityHeaders, csrf_token
from gateway.console.settings import ConsoleConfig
from gateway.console.users import UserStore
from gateway.console.web import (
    HERE,
    Console,
    console_of,
    current_actor,
    page,
    read_form,
    render,
    require_csrf,
)
from gateway.ops.admin import Actor, AdminService

LOG = structlog.get_logger("gateway.console")


# ---- login -------------------------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    if current_actor(request) is not None:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html")


async def login(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    require_csrf(request, form.get("csrf_token"))
    name = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    client = request.client.host if request.client else "-"
    keys = (f"ip:{client}", f"user:{name}")
    wait = console.limiter.retry_after(*keys)
    if wait > 0:
        LOG.warning("console.login_throttled", client=client)
        response = render(request, "login.html", 429, error=f"Too many failed logins: wait {wait:.0f} s.")
        response.headers["retry-after"] = str(int(wait) + 1)
        return response
    user = console.users.verify(name, password)
    if user is None:
        console.limiter.failed(*keys)
        LOG.warning("console.login_failed", client=client)
        return render(request, "login.html", 401, error="Wrong user name or password.")
    console.limiter.succeeded(*keys)
    request.session.clear()  # a fresh session (and CSRF token) at every login
    request.session.update(user=user.name, at=time.time())
    csrf_token(request.session)
    LOG.info("console.login", user=user.name, role=user.role.value)
    return RedirectResponse("/", status_code=303)


@page()
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    if code == 404:
        detail = "no such page or item"
    request.state.actor = getattr(request.state, "actor", None) or _quiet_actor(request)
    return render(request, "error.html", code, code=code, detail=detail)


def _quiet_actor(request: Request) -> Actor | None:
    try:
        return current_actor(request)
    except Exception:  # an error page must render even when the session or users file is broken
        return None


# ---- app ---------------------------------------------------------------------------------------------------
def session_key(secret: bytes) -> str:
    """The cookie-signing key, derived from the gateway secret (no second secret file to manage)."""
    return hmac.new(secret, b"vera-console-session-v1", hashlib.sha256).hexdigest()


def create_app(
    admin: AdminService,
    settings: ConsoleConfig,
    secret: bytes,
    users_path: Path,
    *,
    tls: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    console = Console(
        admin,
        settings,
        UserStore(users_path),
        LoginLimiter(settings.login_attempts, settings.login_window_s, clock),
        tls,
    )
    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *views.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders, hsts=tls),
        Middleware(
            SessionMiddleware,
            secret_key=session_key(secret),
            session_cookie="vera_console",
            max_age=settings.session_max_age_s,
            same_site="strict",
            https_only=tls,
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, 500: http_error},
    )
    app.state.console = console
    return app
