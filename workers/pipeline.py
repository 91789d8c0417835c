"""What workers do, as plain functions of the services: tests call them directly.

An event does not re-fetch its order itself: it asks for a re-fetch of the order (`claim_refetch`),
and one re-fetch covers every event of that order stored before it started. So a burst of pushes
for one order costs one call at once and at most one more per coalescing window, and a push that
arrives while a re-fetch runs always gets a re-fetch that starts after it.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from receiver import alerts, metrics, stats
from receiver.errors import ProviderError, TransientProviderError
from receiver.inbox import raw_push
from receiver.models import Event, EventStatus, Order, utcnow
from receiver.orders import Change, apply_snapshot
from receiver.providers import OrderRef, OrderSnapshot, Source, family_for
from receiver.ratelimit import LimitedHttp, RateLimiter
from receiver.services import Services

log = logging.getLogger("workers.pipeline")
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.DEAD})
WAITING = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED)
# A claim outlives a lost re-fetch task by this much at most; then the next push or the sweeper
# claims again.
CLAIM_TTL = 60


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt; `retry_in` set means: try again after that many seconds."""

    status: str
    retry_in: float | None = None


@dataclass(frozen=True)
class Wanted:
    """An order an event wants re-fetched."""

    source: str
    ref: OrderRef


@metrics.timed_refetch
def refetch_order(svc: Services, source: Source, ref: OrderRef, cause: str) -> list[Change]:
    """Fetch the order's truth from the provider's signed API and apply it; return what changed."""
    http = limited_http(svc, source)
    snapshots = family_for(source.family).fetch_orders(http, source, ref)
    applied = apply_and_alert(svc, source.name, snapshots, http.started or utcnow(), cause)
    changes = [c for snap_changes in applied for c in snap_changes]
    if changes:
        fields = ",".join(c.field for c in changes)
        log.info("order.changed source=%s order=%s fields=%s cause=%s", source.name, ref.order_id, fields, cause)
    return changes


def apply_and_alert(
    svc: Services, source: str, snapshots: list[OrderSnapshot], started: datetime, cause: str
) -> list[list[Change]]:
    """Apply provider snapshots in one transaction, then alert on what changed; the changes per snapshot.

    The one path from a provider's answer to our state, for re-fetches and reconciliation alike."""
    try:
        with svc.Session.begin() as session:
            applied = [apply_snapshot(session, source, snap, started, cause) for snap in snapshots]
    except (IntegrityError, OperationalError) as err:
        # Another worker inserted the same new order first, or the database blinked: try again.
        first = snapshots[0].provider_order_id if snapshots else "?"
        raise TransientProviderError(f"could not apply order {first}: {err.__class__.__name__}") from err
    for snap, changes in zip(snapshots, applied, strict=True):
        alerts.order_alerts(svc, source, snap.provider_order_id, snap.currency, changes)
    return applied


def limited_http(svc: Services, source: Source) -> LimitedHttp:
    """The HTTP session for a source's API calls: each call takes a token of the source's shared bucket."""
    return LimitedHttp(svc.http, RateLimiter(svc.redis, svc.key("ratelimit")), source.name, source.rate_limit, source.rate_burst)


def read_event(svc: Services, event_id: int) -> Wanted | str:
    """What an event wants re-fetched, or the status it ends in without one."""
    with svc.Session() as session:
        event = session.get(Event, event_id)
        if event is None:
            log.warning("event.missing event=%s", event_id)
            return "missing"
        if event.status in DONE:
            return event.status
        source = svc.settings.sources.get(event.source)
        raw = raw_push(event)
    if source is None:
        return dead_letter(svc, [event_id], f"source {event.source!r} is no longer configured").status
    try:
        push = family_for(source.family).parse_push(source, raw)
    except Exception as err:  # noqa: BLE001 - a stored push that no longer parses is dead, whatever the cause
        return dead_letter(svc, [event_id], f"stored push does not parse: {err}").status
    if not push.actionable or push.order is None:
        _set_status(svc, [event_id], EventStatus.IGNORED, None, ignored=push.ignored_reason)
        return EventStatus.IGNORED
    return Wanted(source.name, push.order)


def claim_refetch(svc: Services, wanted: Wanted) -> float | None:
    """Claim the next re-fetch of an order: the countdown to schedule it with, or None when one is
    already scheduled and will start after this event was stored."""
    pending = svc.key("pending", wanted.source, wanted.ref.order_id)
    if not svc.redis.set(pending, 1, nx=True, ex=CLAIM_TTL):
        return None
    last = svc.redis.get(svc.key("last", wanted.source, wanted.ref.order_id))
    window = svc.settings.coalesce_window
    return max(0.0, float(last) + window - time.time()) if last else 0.0


def release_claim(svc: Services, wanted: Wanted) -> None:
    """Let the next push claim a re-fetch, and note when this one started (for the window)."""
    pipe = svc.redis.pipeline()
    pipe.delete(svc.key("pending", wanted.source, wanted.ref.order_id))
    pipe.set(svc.key("last", wanted.source, wanted.ref.order_id), time.time(), ex=max(1, int(svc.settings.coalesce_window) + 1))
    pipe.execute()


def _waiting_events(svc: Services, wanted: Wanted) -> list[int]:
    """Ids of this order's events that wait for a re-fetch: the ones the next re-fetch covers."""
    stmt = select(Event.id).where(
        Event.source == wanted.source, Event.order_id == wanted.ref.order_id, Event.status.in_(WAITING)
    )
    with svc.engine.connect() as conn:
        return list(conn.scalars(stmt))


@metrics.counted_refetch
def handle_refetch(svc: Services, wanted: Wanted, retries: int) -> Outcome:
    """Re-fetch one order for every event waiting on it; sort failures into retry-later and dead."""
    release_claim(svc, wanted)
    covered = _waiting_events(svc, wanted)  # stored before this re-fetch starts
    source = svc.settings.sources.get(wanted.source)
    if source is None:
        return dead_letter(svc, covered, f"source {wanted.source!r} is no longer configured", wanted)
    _count_attempt(svc, covered)
    try:
        refetch_order(svc, source, wanted.ref, cause=f"event:{max(covered)}" if covered else "refetch")
    except (TransientProviderError, OperationalError, RedisError) as err:
        if retries >= svc.settings.max_retries:
            # Only the events that had all their attempts: a push that came during this chain's
            # retries has its own re-fetch coming, and stays failed until it has.
            spent = _exhausted(svc, covered)
            _set_status(svc, [i for i in covered if i not in spent], EventStatus.FAILED, str(err))
            return dead_letter(svc, spent, f"gave up after {retries + 1} attempts: {err}", wanted)
        _set_status(svc, covered, EventStatus.FAILED, str(err))
        log.warning("refetch.retry source=%s order=%s attempt=%s error=%s", source.name, wanted.ref.order_id, retries + 1, err)
        return Outcome(EventStatus.FAILED, retry_in=backoff(svc, retries))
    except ProviderError as err:
        return dead_letter(svc, covered, str(err), wanted)
    except Exception as err:  # noqa: BLE001 - data we cannot store, or a bug: dead and alerted, never stuck
        log.exception("refetch.unexpected source=%s order=%s", source.name, wanted.ref.order_id)
        return dead_letter(svc, covered, f"{err.__class__.__name__}: {err}"[:1000], wanted)
    _set_status(svc, covered, EventStatus.PROCESSED, None)
    return Outcome(EventStatus.PROCESSED)


def dead_letter(svc: Services, event_ids: list[int], error: str, wanted: Wanted | None = None) -> Outcome:
    """Mark events dead with their error and raise the alert (one per order and window); replay
    puts them back."""
    _set_status(svc, event_ids, EventStatus.DEAD, error)
    if event_ids:
        stats.note(["dead"], len(event_ids))
        where = f"{wanted.source} order {wanted.ref.order_id}" if wanted else f"event {event_ids[0]}"
        alerts.raise_alert(
            svc,
            "dead_letter",
            where,
            f"Dead letter: {len(event_ids)} event(s) of {where} failed for good: {error}"[:500],
            {"events": event_ids, "error": error},
            wanted.source if wanted else None,
            wanted.ref.order_id if wanted else None,
        )
    return Outcome(EventStatus.DEAD)


def backoff(svc: Services, retries: int) -> float:
    """Exponential backoff with equal jitter, capped."""
    ceiling = min(svc.settings.retry_backoff_max, svc.settings.retry_backoff * 2**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _count_attempt(svc: Services, event_ids: list[int]) -> None:
    """Count an attempt; `updated_at` tells the sweeper a worker has these events in hand."""
    if event_ids:
        with svc.engine.begin() as conn:
            stmt = update(Event).where(Event.id.in_(event_ids)).values(attempts=Event.attempts + 1, updated_at=utcnow())
            conn.execute(stmt)


def _exhausted(svc: Services, event_ids: list[int]) -> list[int]:
    """Those of the events that have had every attempt RECEIVER_MAX_RETRIES allows."""
    stmt = select(Event.id).where(Event.id.in_(event_ids), Event.attempts > svc.settings.max_retries)
    with svc.engine.connect() as conn:
        return list(conn.scalars(stmt))


def _set_status(svc: Services, event_ids: list[int], status: str, error: str | None, ignored: str | None = None) -> None:
    """Move events on, but never out of a final status: a late duplicate must not undo a result."""
    if not event_ids:
        return
    now = utcnow()
    values: dict[str, object] = {
        "status": status, "last_error": error, "ignored_reason": ignored and ignored[:255], "updated_at": now
    }
    if status == EventStatus.PROCESSED:
        values["processed_at"] = now
    stmt = update(Event).where(Event.id.in_(event_ids), Event.status.in_(WAITING)).values(**values)
    with svc.engine.begin() as conn:
        conn.execute(stmt)


def stuck_events(svc: Services) -> list[int]:
    """Events no worker took within the grace period, and failed ones whose retry never came."""
    now = utcnow()
    grace = timedelta(seconds=svc.settings.sweep_grace)
    retry_lost = grace + timedelta(seconds=svc.settings.retry_backoff_max)
    stmt = (
        select(Event.id)
        .where(
            or_(
                Event.status.in_([EventStatus.RECEIVED, EventStatus.QUEUED]) & (Event.updated_at < now - grace),
                (Event.status == EventStatus.FAILED) & (Event.updated_at < now - retry_lost),
            )
        )
        .order_by(Event.id)
        .limit(1000)
    )
    with svc.engine.connect() as conn:
        return list(conn.scalars(stmt))


FINAL_STATUSES = ("completed", "cancelled", "closed")


def stale_open_orders(svc: Services, source: str, limit: int) -> list[Order]:
    """Orders not in a final state whose last re-fetch is older than RECEIVER_REFRESH_OPEN_AFTER,
    oldest first: what a lost push (and a reconciliation window that no longer covers an old order)
    would leave wrong for ever. An order tried within that time is skipped, so that one whose
    re-fetch fails cannot keep the others from their turn."""
    older = utcnow() - timedelta(seconds=svc.settings.refresh_open_after)
    stmt = (
        select(Order)
        .where(Order.source == source, Order.status.not_in(FINAL_STATUSES), Order.fetched_at < older)
        .order_by(Order.fetched_at)
        .limit(limit * 4)
    )
    with svc.ReadSession() as session:
        candidates = list(session.scalars(stmt))
    if not candidates:
        return []
    tried = svc.redis.mget([svc.key("refreshed", source, o.provider_order_id) for o in candidates])
    return [o for o, mark in zip(candidates, tried, strict=True) if mark is None][:limit]


def note_refresh(svc: Services, source: str, order_id: str) -> None:
    """Remember that an order's refresh was asked for, for RECEIVER_REFRESH_OPEN_AFTER."""
    svc.redis.set(svc.key("refreshed", source, order_id), 1, ex=max(1, int(svc.settings.refresh_open_after)))


@dataclass
class Reconciled:
    """What one reconciliation of a source saw and repaired."""

    pages: int = 0
    orders: int = 0
    changed: int = 0


def reconcile(
    svc: Services, source: Source, since: datetime, until: datetime, progress: Callable[[Reconciled], None] | None = None
) -> Reconciled:
    """Page the provider's order lists over a window and apply every order that differs from ours:
    the repair for pushes that never came. Each page is a signed, rate-limited API call."""
    family = family_for(source.family)
    report = Reconciled()
    http = limited_http(svc, source)
    pages = family.list_orders(http, source, since, until)
    while True:
        http.reset()
        page = next(pages, None)
        started = http.started or utcnow()
        if page is None:
            break
        applied = apply_and_alert(svc, source.name, page, started, "reconcile")
        report.pages += 1
        report.orders += len(page)
        report.changed += sum(1 for changes in applied if changes)
        if progress:
            progress(report)
    if report.changed:
        log.info("reconcile.repaired source=%s orders=%s changed=%s", source.name, report.orders, report.changed)
    return report
