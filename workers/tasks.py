"""Celery tasks: thin wrappers over workers.pipeline; they take ids, never objects."""
from __future__ import annotations

import logging

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from receiver.inbox import mark_queued
from receiver.services import services
from workers import pipeline

log = logging.getLogger("workers.tasks")


@shared_task(bind=True, name="workers.tasks.process_event", max_retries=None)
def process_event(self, event_id: int) -> str:  # type: ignore[no-untyped-def]
    """Re-fetch and apply the order an inbox event announces."""
    outcome = pipeline.handle_event(services(), event_id, self.request.retries)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="workers.tasks.sweep_inbox")
def sweep_inbox() -> int:
    """Enqueue again the events that waited too long (their enqueue failed, or their worker died)."""
    ids = pipeline.stuck_events(services())
    queued = [i for i in ids if enqueue(i)]
    if queued:
        mark_queued(services().engine, queued)
        log.info("sweep.requeued count=%s", len(queued))
    return len(queued)


def enqueue(event_id: int) -> bool:
    """Put an event on the queue; False (and the event stays in the inbox) when the broker is down."""
    try:
        process_event.apply_async((event_id,), retry=False)
    except (BrokerError, RedisError, OSError) as err:
        log.warning("callback.enqueue_failed event=%s error=%s", event_id, err.__class__.__name__)
        return False
    return True
