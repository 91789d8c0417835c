"""/admin: server-rendered pages over the inbox, with replay buttons (Flower cannot retry our events).

Behind the API token: as the password of HTTP Basic (any user name, so a browser asks for it) or
as a Bearer token. Basic credentials are sent by the browser on every request, a cross-site form
included, so each POST also carries a CSRF token: itsdangerous' timed signature under the API
token, valid for CSRF_TTL. It needs no session or cookie, and a page from another site cannot read it.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from redis.exceptions import RedisError
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from receiver import charts, dispatch, metrics, stats
from receiver.args import STATUSES, page_arg, status_arg, when_arg
from receiver.auth import token_matches
from receiver.errors import BadRequest, NotFound, QueueUnavailable, ReceiverError, Unauthorized
from receiver.inbox import current_status_counts, event_headers, listing, select_for_replay
from receiver.logs import loggable
from receiver.models import Alert, Event, EventStatus, Order, utcnow
from receiver.money import yuan, yuan_digits
from receiver.orders import change_totals, find_order, list_orders, money_changes, search_orders
from receiver.providers import STATUS_RANK, family_for
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
def _csrf_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services().settings.api_token or "", salt="receiver-admin-csrf")


def csrf_token() -> str:
    """A token for the forms of one page: itsdangerous' timed signature under the API token."""
    return str(_csrf_serializer().dumps("admin"))


def check_csrf(value: str | None) -> None:
    """Refuse a POST whose token was not issued by us within CSRF_TTL."""
    try:
        _csrf_serializer().loads(value or "", max_age=CSRF_TTL)
    except SignatureExpired:
        raise CsrfRefused("the page is too old; reload it and try again") from None
    except BadData:
        raise CsrfRefused() from None


@bp.context_processor
def template_globals() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token(),
        "statuses": STATUSES,
        "sources": sorted(services().settings.sources),
        "order_statuses": list(STATUS_RANK),
        "yuan": yuan,
        "shown": shown_value,
        "flower_url": services().settings.flower_url,
    }


# --- pages -----------------------------------------------------------------------------------------
INBOX_ARGS = ("status", "source", "order", "page", "replayed")
UNSETTLED = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED, EventStatus.DEAD)


@bp.get("/")
def front() -> ResponseReturnValue:
    """The front page: the service's health at a glance. Links of the old inbox here go to /admin/events."""
    if any(a in request.args for a in INBOX_ARGS):
        kept: dict[str, Any] = request.args.to_dict()
        return redirect(url_for("admin.inbox", **kept), code=302)
    svc = services()
    try:
        data = stats.read(svc)
        depth: int | None = int(svc.redis.llen(svc.settings.namespace))
    except (RedisError, OSError):
        data, depth = None, None
    since = utcnow() - timedelta(hours=24)
    with svc.ReadSession() as session:
        # Only the statuses that call for attention: few rows on the (status, received_at) index,
        # where counting processed events too is a scan of the inbox (0.2-0.4 s at 500,000 on PostgreSQL).
        counts = {s: 0 for s in UNSETTLED} | dict(session.execute(
            select(Event.status, func.count()).where(Event.status.in_(UNSETTLED)).group_by(Event.status)).all())
        recent = select(Alert).where(Alert.created_at >= since)
        per_rule = select(Alert.rule, func.count()).where(Alert.created_at >= since).group_by(Alert.rule)
        by_rule = dict(session.execute(per_rule).all())
        latest = list(session.scalars(recent.order_by(Alert.created_at.desc()).limit(10)))
    return render_template(
        "admin/front.html",
        counts=counts,
        depth=depth,
        charts=health_charts(data, sorted(svc.settings.sources)) if data else None,
        alerts_by_rule=by_rule,
        alerts=latest,
    )


def health_charts(data: dict[str, Any], sources: list[str]) -> list[dict[str, Any]]:
    """The front page's charts, each over the day per hour and over the last hour per minute."""
    shown: list[dict[str, Any]] = []
    windows = {
        "hours": [f"{h % 24:02d}:00" for h, _ in data["hours"]],
        "minutes": [f"{m // 60 % 24:02d}:{m % 60:02d}" for m, _ in data["minutes"]],
    }

    def per(window: str, field: str) -> list[float]:
        return [f.get(field, 0) for _, f in data[window]]

    def summed(window: str, prefix: str, suffix: str) -> list[float]:
        return [sum(v for k, v in f.items() if k.startswith(prefix) and k.endswith(suffix)) for _, f in data[window]]

    def latency(window: str, q: float) -> list[float | None]:
        points: list[float | None] = []
        for _, f in data[window]:
            bound = stats.percentile({k[4:]: v for k, v in f.items() if k.startswith("ack:")}, q)
            # Beyond the last bucket is drawn at twice its bound; the point's title says "5,000 ms".
            points.append(None if not bound else 2 * stats.ACK_BUCKETS_MS[-1] if bound == "inf" else float(bound))
        return points

    specs = [
        ("pushes", "Pushes accepted, by source", "bars", "",
         lambda w: [charts.Series(s, per(w, f"push:{s}:accepted")) for s in sources]),
        ("refused", "Pushes refused (4xx) by source, and failed (5xx)", "bars", "",
         lambda w: [*(charts.Series(s, per(w, f"push:{s}:refused")) for s in [*sources, metrics.UNKNOWN]),
                    charts.Series("failed (5xx)", summed(w, "push:", ":failed"), "#b82e2e")]),
        ("latency", f"Ack latency p50 / p99, ms (buckets up to {', '.join(map(str, stats.ACK_BUCKETS_MS))})", "lines", " ms",
         lambda w: [charts.Series("p50", latency(w, 0.5)), charts.Series("p99", latency(w, 0.99), "#dc7912")]),
        ("refetches", "Re-fetches: processed, failed (retried), dead", "bars", "",
         lambda w: [charts.Series("processed", summed(w, "refetch:", ":processed"), "#109618"),
                    charts.Series("failed", summed(w, "refetch:", ":failed"), "#dc7912"),
                    charts.Series("dead", summed(w, "refetch:", ":dead"), "#b82e2e")]),
        ("dead", "Events dead-lettered", "bars", "", lambda w: [charts.Series("dead letters", per(w, "dead"), "#b82e2e")]),
        ("queue", "Queue depth (the hour's highest; sampled each minute)", "lines", "",
         lambda w: [charts.Series("tasks waiting", [f.get("queue") for _, f in data[w]])]),
    ]
    for name, title, kind, unit, build in specs:
        drawn = {}
        for window, labels in windows.items():
            series = build(window)
            drawn[window] = (charts.draw(f"chart-{name}-{window}", labels, series, kind, unit),
                             charts.legend(series, total=kind == "bars"))
        shown.append({"name": name, "title": title, **drawn})
    return shown


@bp.get("/events")
def inbox() -> str:
    """The inbox, newest first, filtered by status, source and order, with counts per status."""
    status = status_arg()
    source = request.args.get("source", "")
    order = request.args.get("order", "").strip()
    page = page_arg(MAX_PAGE)
    scope = listing(source=source, order=order)
    listed = listing(status, source, order)
    svc = services()
    everything = current_status_counts(svc)  # cached: no scan per view
    dead_by_source = {s: n for (s, st), n in everything.items() if st == EventStatus.DEAD and n}
    with svc.ReadSession() as session:
        if order:  # one order's events: few, and found through the order_id index
            scoped = scope.order_by(None).subquery()
            counts: dict[str, int] = dict(session.execute(select(scoped.c.status, func.count()).group_by(scoped.c.status)).all())
        else:
            counts = {}
            for (s, st), n in everything.items():
                if not source or s == source:
                    counts[st] = counts.get(st, 0) + n
        events = list(session.scalars(listed.limit(PER_PAGE).offset((page - 1) * PER_PAGE)))
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
    ids = select_for_replay(services().engine, EventStatus.DEAD, source, None)
    queued = dispatch.replay(ids)
    log.info("admin.replay_dead source=%s events=%s queued=%s", source, len(ids), queued)
    return redirect(url_for("admin.inbox", source=source, replayed=f"{queued} of {len(ids)}"), code=303)


# --- orders ----------------------------------------------------------------------------------------
MONEY_FIELDS = frozenset({"product_amount", "shipping_fee", "discount", "total_amount", "refund_amount"})
MONEY_LINE_FIELDS = (".price", ".amount", ".refund_amount")


def shown_value(field: str, value: str | None, currency: str | None) -> str:
    """A history value as people read it: amounts in yuan, the rest as recorded."""
    if value is None:
        return ""
    if (field in MONEY_FIELDS or field.endswith(MONEY_LINE_FIELDS)) and value.lstrip("-").isdigit():
        return yuan(value, currency)
    return value


def timeline(order: Order) -> list[dict[str, Any]]:
    """An order's history newest first, one entry per re-fetch that changed it (same time and cause)."""
    entries: list[dict[str, Any]] = []
    for c in sorted(order.changes, key=lambda c: c.id):
        if not entries or (entries[-1]["at"], entries[-1]["cause"]) != (c.at, c.cause):
            kind, _, ref = c.cause.partition(":")
            event_id = int(ref) if kind == "event" and ref.isdigit() else None
            entries.append({"at": c.at, "cause": c.cause, "event_id": event_id, "changes": []})
        old, new = shown_value(c.field, c.old, order.currency), shown_value(c.field, c.new, order.currency)
        entries[-1]["changes"].append((c.field, old, new))
    return entries[::-1]


@bp.get("/orders")
def orders() -> ResponseReturnValue:
    """Find an order by any of its ids across sources, or list orders newest change first."""
    svc = services()
    query = request.args.get("q", "").strip()
    source = request.args.get("source", "")
    status = request.args.get("status", "")
    since_text = request.args.get("since", "").strip()
    since = when_arg("since")
    page = page_arg(MAX_PAGE)
    if status and status not in STATUS_RANK:
        raise BadRequest(f"status must be one of {', '.join(STATUS_RANK)}")
    with svc.ReadSession() as session:
        if query:
            found = search_orders(session, sorted(svc.settings.sources), query)
            if len(found) == 1:
                return redirect(url_for("admin.order", source=found[0].source, order_id=found[0].provider_order_id), code=303)
            listed, more = found, False
        else:
            listed = list_orders(session, source or None, status or None, since, PER_PAGE + 1, (page - 1) * PER_PAGE)
            listed, more = listed[:PER_PAGE], len(listed) > PER_PAGE
    filters = {"q": query, "source": source, "status": status, "since": since_text}
    return render_template("admin/orders.html", orders=listed, more=more and page < MAX_PAGE, page=page, filters=filters)


@bp.get("/orders/<source>/<path:order_id>")  # ids come from pushes and may hold a "/"
def order(source: str, order_id: str) -> str:
    """One order: its state in yuan, its lines, the timeline of its changes and the events that named it."""
    with services().ReadSession() as session:
        found = find_order(session, source, order_id)
        if found is None:
            raise NotFound(f"no order {order_id!r} at source {source!r}")
        # One query per id the events may name it by: with `order_id IN (...)` SQLite preferred the
        # source's index and read every event of the source.
        events = sorted(
            {e.id: e for i in {found.provider_order_id, found.order_no, found.purchase_id} if i for e in session.scalars(
                select(Event).where(Event.source == source, Event.order_id == i)
                .order_by(Event.id.desc()).limit(PER_PAGE))}.values(),
            key=lambda e: e.id, reverse=True,
        )[:PER_PAGE]
        entries = timeline(found)
        lines = list(found.lines)
    return render_template("admin/order.html", order=found, lines=lines, timeline=entries, events=events,
                           refetch=request.args.get("refetch"))


@bp.post("/orders/<source>/<path:order_id>/refetch")
def refetch_order(source: str, order_id: str) -> ResponseReturnValue:
    """Ask a worker to re-fetch one order through the pipeline's claim, as a push would."""
    check_csrf(request.form.get("csrf_token"))
    svc = services()
    src = svc.settings.sources.get(source)
    with svc.ReadSession() as session:
        found = find_order(session, source, order_id) if src else None
        if src is None or found is None:
            raise NotFound(f"no order {order_id!r} at source {source!r}")
        ref = family_for(src.family).held_order_ref(found.platform, found.provider_order_id, found.order_no, found.purchase_id)
        pid = found.provider_order_id
    if ref is None:
        raise BadRequest(f"{source}'s API has no documented way to look up a {found.platform} order")
    if not dispatch.request_refetch(source, ref.platform, ref.order_id, dict(ref.lookup)):
        raise QueueUnavailable("the queue (Redis) is not reachable; try again in a moment")
    log.info("admin.refetch source=%s order=%s", source, pid)
    return redirect(url_for("admin.order", source=source, order_id=pid, refetch="queued"), code=303)


# --- today's changes -------------------------------------------------------------------------------
CHANGES_SHOWN = 200  # rows on the page (rendering is most of its time); the CSV has them all


def _changes_window() -> tuple[Any, Any, str]:
    until = utcnow()
    since = when_arg("since", "24h")
    source = request.args.get("source", "")
    if since is None or since >= until:
        raise BadRequest("since must be in the past")
    if until - since > timedelta(days=92):
        raise BadRequest("since may go back 92 days at most")
    return since, until, source


@bp.get("/changes")
def changes() -> str:
    """Price corrections, refunds and closures in a window (default 24 h), with totals per source."""
    since, until, source = _changes_window()
    with services().ReadSession() as session:
        found = money_changes(session, since, until, source or None)
    return render_template("admin/changes.html", changes=found[:CHANGES_SHOWN], cut=len(found) > CHANGES_SHOWN,
                           count=len(found), totals=change_totals(found), since=since, until=until,
                           filters={"since": request.args.get("since", "24h"), "source": source})


PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet: text that a spreadsheet would run as a formula gets a leading quote.

    A plain number stays a number (a price cut of -1.55 must still add up)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


@bp.get("/changes.csv")
def changes_csv() -> Response:
    """The changes page's window as CSV, one row per change; amounts in yuan and in fen."""
    since, until, source = _changes_window()
    with services().ReadSession() as session:
        found = money_changes(session, since, until, source or None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "source", "order", "order_no", "kind", "old", "new", "change_yuan", "change_fen", "currency", "cause"])
    for c in found:
        money = c.kind != "closed"
        writer.writerow([csv_cell(v) for v in (
            c.at.isoformat(), c.source, c.provider_order_id, c.order_no or "", c.kind,
            yuan_digits(c.old) if money else c.old, yuan_digits(c.new) if money else c.new,
            yuan_digits(c.delta) if money else "", c.delta if money else "", c.currency, c.cause,
        )])
    name = f"changes-{since:%Y%m%dT%H%M}-{until:%Y%m%dT%H%M}.csv"
    return Response(out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


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
