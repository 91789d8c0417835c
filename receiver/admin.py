"""/admin: server-rendered pages over the inbox, with replay buttons (Flower cannot retry our events).

Behind the API token: as the password of HTTP Basic (any user name, so a browser asks for it) or
as a Bearer token. Basic credentials are sent by the browser on every request, a cross-site form
included, so each POST also carries a CSRF token: an HMAC of its issue time under the API token,
valid for CSRF_TTL. It needs no session or cookie, and a page from another site cannot read it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from receiver import dispatch
from receiver.args import STATUSES, page_arg, status_arg
from receiver.auth import token_matches
from receiver.errors import BadRequest, NotFound, ReceiverError, Unauthorized
from receiver.inbox import event_headers, status_counts
from receiver.logs import loggable
from receiver.models import Event, EventStatus
from receiver.orders import find_order
from receiver.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("receiver.admin")
REALM = 'Basic realm="receiver admin"'
PER_PAGE = 50
# Deeper pages are an OFFSET over that many rows; filter (status, source, order) to go further back.
MAX_PAGE = 1000
# An event page indents a body this small and this shallow; anything else is shown raw, cut to
# SHOWN_BODY_BYTES, with a link to the whole body.
PRETTY_BODY_BYTES = 64 * 1024
PRETTY_MAX_DEPTH = 32
SHOWN_BODY_BYTES = 64 * 1024
CSRF_TTL = 12 * 3600  # a page left open over a working day still replays


class CsrfRefused(ReceiverError):
    """The form's CSRF token is missing, forged or expired; reload the page and try again."""

    status = 403
    event = "admin.csrf_refused"


@bp.before_request
def authenticate() -> None:
    auth = request.authorization
    given = None
    if auth is not None and auth.type == "basic":
        given = auth.password
    elif auth is not None and auth.type == "bearer":
        given = auth.token
    if not token_matches(given, services().settings.api_token):
        raise Unauthorized("the admin pages need the API token (as the Basic password or a Bearer token)")


@bp.after_request
def harden(response: Response) -> Response:
    # Our pages only: no framing (clickjacking a replay button), no caching of raw pushes.
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# --- CSRF ------------------------------------------------------------------------------------------
def _csrf_mac(issued: str) -> str:
    key = (services().settings.api_token or "").encode()
    return hmac.new(key, f"receiver-admin-csrf|{issued}".encode(), hashlib.sha256).hexdigest()


def csrf_token(now: float | None = None) -> str:
    """A token for the forms of one page: its issue time and an HMAC of it under the API token."""
    issued = str(int(now if now is not None else time.time()))
    return f"{issued}.{_csrf_mac(issued)}"


def check_csrf(value: str | None) -> None:
    """Refuse a POST whose token was not issued by us within CSRF_TTL."""
    issued, _, mac = (value or "").partition(".")
    if not issued.isdigit() or not hmac.compare_digest(mac.encode(), _csrf_mac(issued).encode()):
        raise CsrfRefused()
    if not 0 <= time.time() - int(issued) <= CSRF_TTL:
        raise CsrfRefused("the page is too old; reload it and try again")


@bp.context_processor
def template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token(), "statuses": STATUSES, "sources": sorted(services().settings.sources)}


# --- pages -----------------------------------------------------------------------------------------
@bp.get("/")
def inbox() -> str:
    """The inbox, newest first, filtered by status, source and order, with counts per status."""
    status = status_arg()
    source = request.args.get("source", "")
    order = request.args.get("order", "").strip()
    page = page_arg(MAX_PAGE)
    scope = select(Event)
    if source:
        scope = scope.where(Event.source == source)
    if order:
        scope = scope.where(Event.order_id == order)
    listed = scope.where(Event.status == status) if status else scope
    svc = services()
    everything = status_counts(svc.read_engine, svc.settings.counts_ttl)  # cached: no scan per view
    dead_by_source = {s: n for (s, st), n in everything.items() if st == EventStatus.DEAD and n}
    with svc.ReadSession() as session:
        if order:  # one order's events: few, and found through the order_id index
            scoped = scope.subquery()
            counts: dict[str, int] = dict(session.execute(select(scoped.c.status, func.count()).group_by(scoped.c.status)).all())
        else:
            counts = {}
            for (s, st), n in everything.items():
                if not source or s == source:
                    counts[st] = counts.get(st, 0) + n
        events = list(session.scalars(listed.order_by(Event.id.desc()).limit(PER_PAGE).offset((page - 1) * PER_PAGE)))
    counts = {s: 0 for s in STATUSES} | counts
    total = counts[status] if status else sum(counts.values())
    return render_template(
        "admin/inbox.html",
        events=events,
        counts=counts,
        dead_by_source=dead_by_source,
        total=total,
        page=page,
        pages=min(MAX_PAGE, max(1, -(-total // PER_PAGE))),
        filters={"status": status, "source": source, "order": order},
        replayed=request.args.get("replayed"),
    )


def shown_body(body: bytes) -> tuple[str, bool]:
    """The body as the page shows it, and whether it was cut: indented when it is small, shallow
    JSON; else raw and at most SHOWN_BODY_BYTES, since indenting a deep body grows it quadratically."""
    if len(body) <= PRETTY_BODY_BYTES and _depth(body) <= PRETTY_MAX_DEPTH:
        text = body.decode("utf-8", "replace")
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False), False
        except ValueError:
            return text, False
    return body[:SHOWN_BODY_BYTES].decode("utf-8", "replace"), len(body) > SHOWN_BODY_BYTES


def _depth(body: bytes) -> int:
    """How deep JSON brackets nest in `body`, counted without parsing it (strings are not skipped:
    a bracket in a string only makes a body look deeper, which shows it raw, as is safe)."""
    depth = deepest = 0
    for byte in body:
        if byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> str:
    """One event: raw headers and body, attempts and error, and its order with lines and history."""
    with services().ReadSession() as session:
        found = session.get(Event, event_id)
        if found is None:
            raise NotFound(f"no event {event_id}")
        order = find_order(session, found.source, found.order_id) if found.order_id else None
        siblings = []
        if found.order_id:
            stmt = (
                select(Event)
                .where(Event.source == found.source, Event.order_id == found.order_id, Event.id != found.id)
                .order_by(Event.id.desc())
                .limit(20)
            )
            siblings = list(session.scalars(stmt))
    # Rendered with the session closed: a slow page holds no connection.
    body, cut = shown_body(found.body)
    return render_template(
        "admin/event.html",
        event=found,
        headers=event_headers(found),
        body=body,
        body_cut=cut,
        body_size=len(found.body),
        order=order,
        siblings=siblings,
        replayed=request.args.get("replayed"),
    )


@bp.get("/events/<int:event_id>/body")
def event_body(event_id: int) -> Response:
    """An event's body exactly as it was received, as a download."""
    with services().ReadSession() as session:
        body = session.scalar(select(Event.body).where(Event.id == event_id))
    if body is None:
        raise NotFound(f"no event {event_id}")
    return Response(body, mimetype="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="event-{event_id}-body"'})


@bp.post("/events/<int:event_id>/replay")
def replay_event(event_id: int) -> ResponseReturnValue:
    """Put one event back through the pipeline."""
    check_csrf(request.form.get("csrf_token"))
    queued = dispatch.replay([event_id])
    log.info("admin.replay event=%s queued=%s", event_id, queued)
    return redirect(url_for("admin.event", event_id=event_id, replayed=queued), code=303)


@bp.post("/replay-dead")
def replay_dead() -> ResponseReturnValue:
    """Put every dead event of one source back through the pipeline."""
    check_csrf(request.form.get("csrf_token"))
    source = request.form.get("source", "")
    if source not in services().settings.sources:
        raise BadRequest(f"no source {source!r}")
    ids = dispatch.select_for_replay(services(), EventStatus.DEAD, source, None)
    queued = dispatch.replay(ids)
    log.info("admin.replay_dead source=%s events=%s queued=%s", source, len(ids), queued)
    return redirect(url_for("admin.inbox", source=source, replayed=f"{queued} of {len(ids)}"), code=303)


# --- errors, as pages ------------------------------------------------------------------------------
def _error_page(status: int, message: str) -> Response:
    response = Response(render_template("admin/error.html", status=status, message=message), status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM
    return response


@bp.errorhandler(ReceiverError)
def admin_error(err: ReceiverError) -> Response:
    log.info("%s path=%s", err.event, loggable(request.path, 200))
    return _error_page(err.status, err.message)


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    return _error_page(err.code or 500, err.description or "")
