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
import ipaddress
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.console.security import LoginLimiter, SecurityHeaders, csrf_ok, csrf_token
from gateway.console.settings import ConsoleConfig
from gateway.console.users import UserStore
from gateway.ops.admin import Actor, AdminService, Role

LOG = structlog.get_logger("gateway.console")
HERE = Path(__file__).parent
Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """What every request handler needs; stored on ``app.state.console``."""

    def __init__(
        self,
        admin: AdminService,
        settings: ConsoleConfig,
        users: UserStore,
        limiter: LoginLimiter,
        tls: bool,
    ) -> None:
        self.admin = admin
        self.settings = settings
        self.users = users
        self.limiter = limiter
        self.tls = tls
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters.update(age=fmt_age, ts=fmt_ts, dur=fmt_duration, size=fmt_size)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]

    def from_trusted_proxy(self, request: Request) -> bool:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._proxies)


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def current_actor(request: Request) -> Actor | None:
    """The logged-in user (role from the users file, live), or the trusted proxy's user when configured."""
    console = console_of(request)
    header = console.settings.trusted_proxy_header
    if header and console.from_trusted_proxy(request):
        name = request.headers.get(header, "").strip()
        if name:
            user = console.users.get(name)
            return Actor(name, user.role if user else Role(console.settings.proxy_default_role))
    name = request.session.get("user")
    if not name:
        return None
    user = console.users.get(str(name))
    if user is None:  # removed from the users file: the session ends
        request.session.clear()
        return None
    return Actor(user.name, user.role)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    console = console_of(request)
    context.update(
        actor=getattr(request.state, "actor", None),
        csrf=csrf_token(request.session),
        flash=request.session.pop("flash", ""),
        refresh_s=console.settings.refresh_s,
        path=request.url.path,
    )
    return console.templates.TemplateResponse(request, template, context, status_code=status_code)


def page(*, admin: bool = False) -> Callable[[Handler], Handler]:
    """Login required (redirect to /login); ``admin`` pages answer 403 to viewers; POSTs need the CSRF token
    (checked here for url-encoded forms; multipart handlers call :func:`require_csrf` themselves)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request) -> Response:
            actor = current_actor(request)
            if actor is None:
                return RedirectResponse("/login", status_code=303)
            request.state.actor = actor
            if request.method == "POST" and "multipart/" not in request.headers.get("content-type", ""):
                form = await request.form()
                require_csrf(request, form.get("csrf_token"))
                request.state.form = {k: v for k, v in form.items() if isinstance(v, str)}
            if admin and not actor.is_admin:
                raise HTTPException(403, "this needs the admin role")
            return await handler(request)

        return wrapper

    return decorate


def require_csrf(request: Request, submitted: Any) -> None:
    if not csrf_ok(request.session, submitted if isinstance(submitted, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


# ---- login -------------------------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    if current_actor(request) is not None:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html")


async def login(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
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
    from gateway.console import views

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


# ---- template filters --------------------------------------------------------------------------------------
def fmt_age(at: float | None) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, time.time() - at)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.0f} d"


def fmt_ts(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def fmt_size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
