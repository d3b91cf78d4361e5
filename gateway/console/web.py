"""Shared request plumbing of the console: the :class:`Console` context, the current actor, rendering,
the ``page`` decorator (login, role, CSRF) and the template filters. Pages: ``views.py``; app: ``app.py``."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from gateway.console.security import (
    BadForm,
    LoginLimiter,
    UploadTooLarge,
    csrf_ok,
    csrf_token,
    read_urlencoded,
)
from gateway.console.settings import ConsoleConfig
from gateway.console.users import UserStore
from gateway.ops.admin import Actor, AdminService, Role

HERE = Path(__file__).parent
MAX_FORM_BYTES = 3 * 1024 * 1024  # url-encoded: a rule file (MAX_RULES_BYTES) with its escaping
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
                form = await read_form(request)
                require_csrf(request, form.get("csrf_token"))
                request.state.form = form
            if admin and not actor.is_admin:
                raise HTTPException(403, "this needs the admin role")
            return await handler(request)

        return wrapper

    return decorate


async def read_form(request: Request) -> dict[str, str]:
    """The posted url-encoded form, at most :data:`MAX_FORM_BYTES` (a rule file fits), else 413/400."""
    try:
        return await read_urlencoded(request, MAX_FORM_BYTES)
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except BadForm as exc:
        raise HTTPException(400, str(exc)) from exc


def require_csrf(request: Request, submitted: Any) -> None:
    if not csrf_ok(request.session, submitted if isinstance(submitted, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


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
