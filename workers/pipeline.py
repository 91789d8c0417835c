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
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from receiver import alerts, inbox, metrics, stats
from receiver.errors import ProviderError, TransientProviderError
from receiver.inbox import DONE, raw_push
from receiver.models import Event, EventStatus, Order, utcnow
from receiver.orders import Change, apply_snapshot
from receiver.providers import OrderRef, OrderSnapshot, Source, family_for
from receiver.ratelimit import LimitedHttp, RateLimiter
from receiver.services import Services

log = logging.getLogger("workers.pipeline")
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
        inbox.set_status(svc.engine, [event_id], EventStatus.IGNORED, None, ignored=push.ignored_reason)
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


@metrics.counted_refetch
def handle_refetch(svc: Services, wanted: Wanted, retries: int) -> Outcome:
    """Re-fetch one order for every event waiting on it; sort failures into retry-later and dead."""
    release_claim(svc, wanted)
    covered = inbox.waiting_for(svc.engine, wanted.source, wanted.ref.order_id)  # stored before this re-fetch starts
    source = svc.settings.sources.get(wanted.source)
    if source is None:
        return dead_letter(svc, covered, f"source {wanted.source!r} is no longer configured", wanted)
    inbox.count_attempt(svc.engine, covered)
    try:
        refetch_order(svc, source, wanted.ref, cause=f"event:{max(covered)}" if covered else "refetch")
    except (TransientProviderError, OperationalError, RedisError) as err:
        if retries >= svc.settings.max_retries:
            # Only the events that had all their attempts: a push that came during this chain's
            # retries has its own re-fetch coming, and stays failed until it has.
            spent = inbox.exhausted(svc.engine, covered, svc.settings.max_retries)
            inbox.set_status(svc.engine, [i for i in covered if i not in spent], EventStatus.FAILED, str(err))
            return dead_letter(svc, spent, f"gave up after {retries + 1} attempts: {err}", wanted)
        inbox.set_status(svc.engine, covered, EventStatus.FAILED, str(err))
        log.warning("refetch.retry source=%s order=%s attempt=%s error=%s", source.name, wanted.ref.order_id, retries + 1, err)
        return Outcome(EventStatus.FAILED, retry_in=backoff(svc, retries))
    except ProviderError as err:
        return dead_letter(svc, covered, str(err), wanted)
    except Exception as err:  # noqa: BLE001 - data we cannot store, or a bug: dead and alerted, never stuck
        log.exception("refetch.unexpected source=%s order=%s", source.name, wanted.ref.order_id)
        return dead_letter(svc, covered, f"{err.__class__.__name__}: {err}"[:1000], wanted)
    inbox.set_status(svc.engine, covered, EventStatus.PROCESSED, None)
    return Outcome(EventStatus.PROCESSED)


def dead_letter(svc: Services, event_ids: list[int], error: str, wanted: Wanted | None = None) -> Outcome:
    """Mark events dead with their error and raise the alert (one per order and window); replay
    puts them back."""
    died = inbox.set_status(svc.engine, event_ids, EventStatus.DEAD, error)
    if died:  # the chart counts events that died now, not those a late duplicate named again
        stats.note(["dead"], died)
    if event_ids:
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


def stuck_events(svc: Services) -> list[int]:
    """Events no worker took within the grace period, and failed ones whose retry never came."""
    grace = timedelta(seconds=svc.settings.sweep_grace)
    return inbox.stuck(svc.engine, grace, grace + timedelta(seconds=svc.settings.retry_backoff_max))


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
