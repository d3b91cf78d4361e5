"""The console's pages: overview, studies and trails, quarantine (replay, discard), rules (check, save,
explain), audit. Each handler reads through :class:`gateway.ops.admin.AdminService` and renders a template.

Nothing here puts patient data in a page or URL: ids are ledger ids, studies and patients appear as keyed
hashes and pseudonyms. The one exception is the explain result, rendered for an admin from the uploaded
file itself, which stays in memory.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.console.charts import bar_chart
from gateway.console.security import BadForm, UploadTooLarge, read_multipart
from gateway.console.web import console_of, page, render, require_csrf
from gateway.core.jobs import describe_pixels
from gateway.core.ledger import JobState
from gateway.core.ledger.admin import JobQuery
from gateway.ops.admin import MAX_UPLOAD_BYTES, InvalidInput, PermissionDenied

SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
KINDS = ("receive", "instance", "job", "forward")


def _arg(request: Request, name: str, allowed: tuple[str, ...] | None = None, limit: int = 64) -> str:
    value = request.query_params.get(name, "")[:limit].strip()
    if allowed is not None and value not in allowed:
        return ""
    return value


@page()
async def overview(request: Request) -> Response:
    view = console_of(request).admin.overview()
    return render(
        request,
        "overview.html",
        view=view,
        hour_chart=bar_chart(view.hour, "forwarded per 5 min, last hour"),
        day_chart=bar_chart(view.day, "forwarded per hour, last day"),
        refresh=True,
    )


@page()
async def studies(request: Request) -> Response:
    admin = console_of(request).admin
    since = _arg(request, "since", tuple(SINCE))
    query = JobQuery(
        text=_arg(request, "q"),
        state=_arg(request, "state", tuple(s.value for s in JobState)),
        route=_arg(request, "route", limit=128),
        since=time.time() - SINCE[since] if since else None,
        limit=200,
    )
    return render(
        request,
        "studies.html",
        jobs=admin.find_jobs(query),
        query=query,
        since=since,
        states=[s.value for s in JobState],
        routes=admin.routes(),
        refresh=True,
    )


@page()
async def trail(request: Request) -> Response:
    found = console_of(request).admin.trail(request.path_params["job_id"])
    if found is None:
        raise HTTPException(404)
    return render(request, "trail.html", trail=found, refresh=True)


@page()
async def quarantine(request: Request) -> Response:
    show_all = request.query_params.get("all") == "1"
    kind = _arg(request, "kind", KINDS)
    text = _arg(request, "q")
    items = console_of(request).admin.quarantine(include_released=show_all, kind=kind, text=text)
    return render(
        request,
        "quarantine.html",
        items=items,
        kind=kind,
        text=text,
        show_all=show_all,
        kinds=KINDS,
        refresh=True,
    )


@page()
async def quarantine_item(request: Request) -> Response:
    detail = console_of(request).admin.quarantine_detail(request.path_params["item_id"])
    if detail is None:
        raise HTTPException(404)
    released = detail.item.released_at is not None  # reload to follow a replay, never under open forms
    return render(request, "quarantine_item.html", detail=detail, refresh=released)


@page()
async def quarantine_action(request: Request) -> Response:
    """POST replay | discard: confirmed (checkbox), with a reason for discard, audited by the service."""
    item_id = request.path_params["item_id"]
    action = request.path_params["action"]
    if action not in ("replay", "discard"):
        raise HTTPException(404)
    form: dict[str, str] = request.state.form
    if form.get("confirm") != "yes":
        raise HTTPException(400, "tick the confirmation box to confirm this action")
    admin = console_of(request).admin
    reason = form.get("reason", "")[:500]
    try:
        if action == "replay":
            new_state = admin.replay(item_id, request.state.actor, reason)
        else:
            new_state = admin.discard(item_id, request.state.actor, reason)
    except PermissionDenied as exc:
        raise HTTPException(403, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    except InvalidInput as exc:
        raise HTTPException(400, str(exc)) from exc
    request.session["flash"] = f"Item {item_id}: {action} done, instance is now {new_state or '-'}."
    return RedirectResponse(f"/quarantine/{item_id}", status_code=303)


@page()
async def rules(request: Request) -> Response:
    admin = console_of(request).admin
    return render(request, "rules.html", **_rules_context(admin), text=admin.rules_text())


def _rules_context(admin: Any) -> dict[str, Any]:
    from gateway.ops.admin import route_summary

    return {
        "status": admin.rules_status(),
        "route_rows": route_summary(admin.rules()),
        "editable": admin.config.rules_file is not None,
    }


@page()
async def rules_check(request: Request) -> Response:
    admin = console_of(request).admin
    text = request.state.form.get("text", "")
    try:
        result = admin.check_rules(text)
    except InvalidInput as exc:
        raise HTTPException(400, str(exc)) from exc
    return render(request, "rules.html", **_rules_context(admin), text=text, check=result)


@page(admin=True)
async def rules_save(request: Request) -> Response:
    admin = console_of(request).admin
    text = request.state.form.get("text", "")
    try:
        result = admin.save_rules(text, request.state.actor)
    except (InvalidInput, PermissionDenied) as exc:
        raise HTTPException(403 if isinstance(exc, PermissionDenied) else 400, str(exc)) from exc
    if result.ok:
        request.session["flash"] = (
            f"Saved rules {result.name} ({result.sha256[:16]}); they apply within seconds."
        )
        return RedirectResponse("/rules", status_code=303)
    return render(request, "rules.html", 400, **_rules_context(admin), text=text, check=result)


@page(admin=True)
async def explain_page(request: Request) -> Response:
    return render(request, "explain.html", max_mib=MAX_UPLOAD_BYTES // (1024 * 1024))


@page(admin=True)
async def explain_upload(request: Request) -> Response:
    """The uploaded file is parsed in memory and dropped with the response; nothing is written or logged."""
    admin = console_of(request).admin
    try:
        fields, files = await read_multipart(request, MAX_UPLOAD_BYTES + 64 * 1024)
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except BadForm as exc:
        raise HTTPException(400, str(exc)) from exc
    require_csrf(request, fields.get("csrf_token"))
    try:
        expl = admin.explain(files.get("file", b""), request.state.actor, fields.get("calling_ae", "")[:16])
    except InvalidInput as exc:
        return render(request, "explain.html", 400, error=str(exc), max_mib=MAX_UPLOAD_BYTES // 2**20)
    plan = describe_pixels(expl.decision.pixels)
    return render(request, "explain.html", expl=expl, plan=plan, max_mib=MAX_UPLOAD_BYTES // (1024 * 1024))


@page()
async def audit(request: Request) -> Response:
    return render(request, "audit.html", rows=console_of(request).admin.audit_log(500))


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/studies", studies),
        Route("/studies/{job_id:int}", trail),
        Route("/quarantine", quarantine),
        Route("/quarantine/{item_id:int}", quarantine_item),
        Route("/quarantine/{item_id:int}/{action:str}", quarantine_action, methods=["POST"]),
        Route("/rules", rules),
        Route("/rules/check", rules_check, methods=["POST"]),
        Route("/rules/save", rules_save, methods=["POST"]),
        Route("/rules/explain", explain_page),
        Route("/rules/explain", explain_upload, methods=["POST"]),
        Route("/audit", audit),
    ]
