"""Celery tasks: thin wrappers over workers.pipeline; they take ids and plain values, never objects."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from receiver import alerts, dispatch, inbox, logs, stats
from receiver.errors import TransientProviderError
from receiver.inbox import forget_nonces
from receiver.models import EventStatus, utcnow
from receiver.providers import OrderRef, family_for
from receiver.services import services
from workers import pipeline

log = logging.getLogger("workers.tasks")


@shared_task(name=dispatch.PROCESS_EVENT)
def process_event(event_id: int) -> str:
    """Ask for a re-fetch of the order an inbox event announces (coalesced per order)."""
    with logs.bound(event_id=event_id):
        svc = services()
        wanted = pipeline.read_event(svc, event_id)
        if isinstance(wanted, str):
            return wanted
        with logs.bound(source=wanted.source, order_id=wanted.ref.order_id):
            if not schedule_refetch(wanted, event_id=event_id):
                log.info("event.coalesced")
                return "coalesced"
            return "scheduled"


@shared_task(name=dispatch.PROCESS_EVENTS)
def process_events(event_ids: list[int]) -> dict[str, int]:
    """The web's batches: one message for the events a web process stored in the same moment."""
    outcomes: dict[str, int] = {}
    for event_id in event_ids:
        try:
            outcome = process_event(event_id)
        except Exception:  # noqa: BLE001 - one event must not hold up its batch; the sweeper retries it
            log.exception("event.failed event=%s", event_id)
            outcome = "error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@shared_task(bind=True, name="workers.tasks.refetch_order", max_retries=None)
def refetch_order(self, source: str, platform: str, order_id: str, lookup: dict[str, str], event_id: int | None = None) -> str:  # type: ignore[no-untyped-def]
    """Re-fetch one order from its provider and apply it, for every event waiting on it."""
    # The event that asked for this re-fetch; it covers the order's other waiting events too.
    with logs.bound(source=source, order_id=order_id, event_id=event_id):
        wanted = pipeline.Wanted(source, OrderRef(platform, order_id, lookup))
        outcome = pipeline.handle_refetch(services(), wanted, self.request.retries)
        if outcome.retry_in is not None:
            raise self.retry(countdown=outcome.retry_in)
        return outcome.status


@shared_task(name=dispatch.REFETCH_HELD_ORDER)
def refetch_held_order(source: str, platform: str, order_id: str, lookup: dict[str, str]) -> str:
    """Re-fetch an order we hold with no push to go by (the admin's button), coalesced with any pending one."""
    return "scheduled" if schedule_refetch(pipeline.Wanted(source, OrderRef(platform, order_id, lookup))) else "pending"


@shared_task(name="workers.tasks.sweep_inbox")
def sweep_inbox() -> int:
    """Enqueue again the events that waited too long (their enqueue failed, or their worker died),
    and the alerts whose delivery was never queued; forget spent nonces too old to matter."""
    svc = services()
    forget_nonces(svc.engine, svc.settings.timestamp_window)
    for alert_id in alerts.pending(svc):
        deliver_alert.apply_async((alert_id,), retry=False)
    return dispatch.requeue(pipeline.stuck_events(svc))


@shared_task(bind=True, name=alerts.DELIVER_TASK, max_retries=None)
def deliver_alert(self, alert_id: int) -> str:  # type: ignore[no-untyped-def]
    """Deliver one alert to its sinks, retrying with backoff; give up after RECEIVER_MAX_RETRIES."""
    svc = services()
    try:
        return alerts.deliver(svc, alert_id)
    except TransientProviderError:
        if self.request.retries >= svc.settings.max_retries:
            alerts.give_up(svc, alert_id)
            return "failed"
        raise self.retry(countdown=pipeline.backoff(svc, self.request.retries)) from None


@shared_task(name="workers.tasks.check_backlog")
def check_backlog() -> int:
    """Alert when more tasks wait on the queue than the queue_backlog rule allows."""
    svc = services()
    depth = int(svc.redis.llen(svc.settings.namespace))
    stats.sample_queue(svc, depth)
    if depth > svc.settings.alerts.rules["queue_backlog"].threshold:
        alerts.raise_alert(
            svc, "queue_backlog", "queue", f"{depth} tasks wait on the queue {svc.settings.namespace}", {"depth": depth}
        )
    return depth


@shared_task(name="workers.tasks.purge_events")
def purge_events() -> int:
    """Delete processed and ignored events past RECEIVER_RETENTION_DAYS; dead ones stay until replayed
    or purged by hand, and order history is never deleted."""
    svc = services()
    before = utcnow() - timedelta(days=svc.settings.retention_days)
    deleted = inbox.purge_events(svc.engine, (EventStatus.PROCESSED, EventStatus.IGNORED), before)
    forget_nonces(svc.engine, svc.settings.timestamp_window)
    if deleted:
        log.info("events.purged count=%s before=%s", deleted, before.isoformat())
    return deleted


@shared_task(name="workers.tasks.refresh_open_orders")
def refresh_open_orders(source: str) -> int:
    """Re-fetch a source's open orders that had no news for RECEIVER_REFRESH_OPEN_AFTER, oldest first:
    a minute's worth of the source's rate limit per run, spread over two minutes so that pushes keep
    half of the limit and no worker sits waiting for tokens."""
    svc = services()
    src = svc.settings.sources.get(source)
    if src is None:
        return 0
    family = family_for(src.family)
    scheduled = 0
    for order in pipeline.stale_open_orders(svc, source, limit=max(1, int(src.rate_limit * 60))):
        pipeline.note_refresh(svc, source, order.provider_order_id)
        ref = family.held_order_ref(order.platform, order.provider_order_id, order.order_no, order.purchase_id)
        if ref is None:
            continue
        if schedule_refetch(pipeline.Wanted(source, ref), at_least=scheduled / (src.rate_limit / 2)):
            scheduled += 1
    if scheduled:
        log.info("orders.refresh_scheduled source=%s count=%s", source, scheduled)
    return scheduled


def schedule_refetch(wanted: pipeline.Wanted, at_least: float = 0.0, event_id: int | None = None) -> bool:
    """Queue a re-fetch of an order through its claim (for a push's event, the open-order refresh or
    the admin's button); False when one is already on its way and will cover it."""
    countdown = pipeline.claim_refetch(services(), wanted)
    if countdown is None:
        return False
    ref = wanted.ref
    kwargs = {"event_id": event_id} if event_id is not None else {}
    args = (wanted.source, ref.platform, ref.order_id, dict(ref.lookup))
    refetch_order.apply_async(args, kwargs, countdown=max(countdown, at_least))
    return True


@shared_task(name="workers.tasks.reconcile_source")
def reconcile_source(source: str) -> dict[str, int]:
    """Repair what pushes missed: compare a source's recent orders with ours (beat, per source)."""
    svc = services()
    until = utcnow()
    since = until - timedelta(seconds=svc.settings.reconcile_window)
    report = pipeline.reconcile(svc, svc.settings.sources[source], since, until)
    return {"pages": report.pages, "orders": report.orders, "changed": report.changed}
