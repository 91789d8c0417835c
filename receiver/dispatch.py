"""Putting events on the queue from anywhere (web, admin, CLI, sweeper): Celery tasks sent by name.

The tasks live in `workers.tasks`, which imports the receiver; sending them by their registered
names keeps the receiver from importing the workers back. The names are part of the queue's
contract with running workers: renaming one strands the messages already queued under it.
"""
from __future__ import annotations

import logging

from flask import Flask, current_app
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from receiver.inbox import mark_queued, reopen
from receiver.services import services

log = logging.getLogger("receiver.dispatch")
PROCESS_EVENT = "workers.tasks.process_event"
PROCESS_EVENTS = "workers.tasks.process_events"
REFETCH_HELD_ORDER = "workers.tasks.refetch_held_order"


def publish_batch(app: Flask, event_ids: list[int]) -> None:
    """Publish one `process_events` message for a batch; the broker's errors are the caller's."""
    # Through this Flask app's Celery app: Celery's process-wide default is whichever app was built last.
    app.extensions["celery"].send_task(PROCESS_EVENTS, (event_ids,), retry=False)


def enqueue(event_id: int) -> bool:
    """Put an event on the queue; False, and the event stays in the inbox, when the broker is down."""
    try:
        current_app.extensions["celery"].send_task(PROCESS_EVENT, (event_id,), retry=False)
    except (BrokerError, RedisError, OSError) as err:
        log.warning("events.enqueue_failed event=%s error=%s", event_id, err.__class__.__name__)
        return False
    return True


def request_refetch(source: str, platform: str, order_id: str, lookup: dict[str, str]) -> bool:
    """Ask a worker to re-fetch an order we hold (the admin's button), through the claim a push takes;
    False when the broker is down."""
    try:
        current_app.extensions["celery"].send_task(REFETCH_HELD_ORDER, (source, platform, order_id, lookup), retry=False)
    except (BrokerError, RedisError, OSError) as err:
        log.warning("orders.refetch_unsent source=%s order=%s error=%s", source, order_id, err.__class__.__name__)
        return False
    return True


def requeue(event_ids: list[int]) -> int:
    """Put events on the queue again and mark them `queued`; return how many went."""
    queued = [i for i in event_ids if enqueue(i)]
    if queued:
        mark_queued(services().engine, queued)
        log.info("events.requeued count=%s", len(queued))
    return len(queued)


def replay(event_ids: list[int]) -> int:
    """Put dead (or stuck) events back through the pipeline; return how many were queued."""
    return requeue(reopen(services().engine, event_ids))
