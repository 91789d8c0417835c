"""Celery tasks: thin wrappers over workers.pipeline; they take ids and plain values, never objects."""
from __future__ import annotations

import logging

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from receiver import logs
from receiver.inbox import mark_queued
from receiver.providers import OrderRef
from receiver.services import services
from workers import pipeline

log = logging.getLogger("workers.tasks")


@shared_task(name="workers.tasks.process_event")
def process_event(event_id: int) -> str:
    """Ask for a re-fetch of the order an inbox event announces (coalesced per order)."""
    with logs.bound(event_id=event_id):
        svc = services()
        wanted = pipeline.read_event(svc, event_id)
        if isinstance(wanted, str):
            return wanted
        ref = wanted.ref
        with logs.bound(source=wanted.source, order_id=ref.order_id):
            countdown = pipeline.claim_refetch(svc, wanted)
            if countdown is None:
                log.info("event.coalesced")
                return "coalesced"
            refetch_order.apply_async(
                (wanted.source, ref.platform, ref.order_id, dict(ref.lookup)), {"event_id": event_id}, countdown=countdown
            )
            return "scheduled"


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


@shared_task(name="workers.tasks.sweep_inbox")
def sweep_inbox() -> int:
    """Enqueue again the events that waited too long (their enqueue failed, or their worker died)."""
    return requeue(pipeline.stuck_events(services()))


def requeue(event_ids: list[int]) -> int:
    """Put events on the queue again and mark them `queued`; return how many went."""
    queued = [i for i in event_ids if enqueue(i)]
    if queued:
        mark_queued(services().engine, queued)
        log.info("events.requeued count=%s", len(queued))
    return len(queued)


def replay(event_ids: list[int]) -> int:
    """Put dead (or stuck) events back through the pipeline; return how many were queued."""
    return requeue(pipeline.reopen(services(), event_ids))


def enqueue(event_id: int) -> bool:
    """Put an event on the queue; False (and the event stays in the inbox) when the broker is down."""
    try:
        process_event.apply_async((event_id,), retry=False)
    except (BrokerError, RedisError, OSError) as err:
        log.warning("callback.enqueue_failed event=%s error=%s", event_id, err.__class__.__name__)
        return False
    return True
