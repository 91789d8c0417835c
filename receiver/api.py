"""Read API for internal users: orders and the inbox, behind a Bearer token."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from receiver.args import int_arg, page_arg, status_arg
from receiver.auth import check_bearer
from receiver.errors import NotFound, ReceiverError
from receiver.inbox import current_status_counts, listing
from receiver.logs import loggable
from receiver.models import Event
from receiver.orders import find_order, order_json
from receiver.services import services

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("receiver.api")
MAX_PAGE_SIZE = 200
MAX_PAGES = 1000  # an OFFSET of at most 200,000 rows: deeper, filter by status or source


@bp.before_request
def authenticate() -> None:
    check_bearer(request.headers.get("Authorization"), services().settings.api_token)


def event_json(event: Event) -> dict[str, Any]:
    """An inbox event as the read API lists it (without its raw body)."""
    return {
        "id": event.id,
        "source": event.source,
        "message_type": event.message_type,
        "kind": event.kind,
        "platform": event.platform,
        "order_id": event.order_id,
        "status": event.status,
        "attempts": event.attempts,
        "last_error": event.last_error,
        "ignored_reason": event.ignored_reason,
        "received_at": event.received_at.isoformat(),
        "processed_at": event.processed_at.isoformat() if event.processed_at else None,
    }


@bp.get("/orders/<source>/<order_id>")
def get_order(source: str, order_id: str) -> Response:
    """One order by any of its ids, with its lines and history oldest first."""
    with services().ReadSession() as session:
        order = find_order(session, source, order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r} at source {source!r}")
        return jsonify(order_json(order))


@bp.get("/events")
def list_events() -> Response:
    """The inbox, newest first, filtered by status and source, a page at a time."""
    page = page_arg(MAX_PAGES)
    per_page = int_arg("per_page", 50, 1, MAX_PAGE_SIZE)
    status, source = status_arg(), request.args.get("source", "")
    stmt = listing(status, source)
    svc = services()
    counts = current_status_counts(svc)  # cached: no scan per call
    total = sum(n for (s, st), n in counts.items() if (not source or s == source) and (not status or st == status))
    with svc.ReadSession() as session:
        events = session.scalars(stmt.limit(per_page).offset((page - 1) * per_page))
        return jsonify(page=page, per_page=per_page, total=total, events=[event_json(e) for e in events])


@bp.errorhandler(ReceiverError)
def api_error(err: ReceiverError) -> tuple[Response, int]:
    log.info("%s path=%s", err.event, loggable(request.path, 200))
    return jsonify(error=err.message), err.status


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> tuple[Response, int]:
    return jsonify(error=err.description), err.code or 500
