"""What workers do, as plain functions of the services: tests call them directly."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError

from receiver.config import Source
from receiver.errors import PermanentProviderError, ProviderError, TransientProviderError
from receiver import inbox
from receiver.inbox import raw_push
from receiver.models import Event, EventStatus, utcnow
from receiver.orders import Change, apply_snapshot
from receiver.providers import OrderRef, family_for
from receiver.services import Services

log = logging.getLogger("workers.pipeline")
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED})


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt at an event; `retry_in` set means: try again after that many seconds."""

    status: str
    retry_in: float | None = None


def refetch_order(svc: Services, source: Source, ref: OrderRef, cause: str) -> list[Change]:
    """Fetch the order's truth from the provider's signed API and apply it; return what changed."""
    started = utcnow()
    snapshots = family_for(source.family).fetch_orders(svc.http, source, ref)
    try:
        with svc.Session.begin() as session:
            changes = [c for snap in snapshots for c in apply_snapshot(session, source.name, snap, started, cause)]
    except (IntegrityError, OperationalError) as err:
        # Another worker inserted the same new order first, or the database blinked: try again.
        raise TransientProviderError(f"could not apply order {ref.order_id}: {err.__class__.__name__}") from err
    if changes:
        log.info(
            "order.changed source=%s order=%s fields=%s cause=%s",
            source.name,
            ref.order_id,
            ",".join(c.field for c in changes),
            cause,
        )
    return changes


def process_event(svc: Services, event_id: int) -> str:
    """Re-fetch the order an event announces and mark the event processed; idempotent."""
    with svc.Session.begin() as session:
        event = session.get(Event, event_id)
        if event is None:
            log.warning("event.missing event=%s", event_id)
            return "missing"
        if event.status in DONE:
            return event.status
        source = svc.settings.sources.get(event.source)
        if source is None:
            raise PermanentProviderError(f"source {event.source!r} is no longer configured")
        event.attempts += 1
        event.updated_at = utcnow()
        push = family_for(source.family).parse_push(source, raw_push(event))
    if push.actionable and push.order is not None:
        refetch_order(svc, source, push.order, cause=f"event:{event_id}")
    _set_status(svc, event_id, EventStatus.PROCESSED if push.actionable else EventStatus.IGNORED, None)
    return EventStatus.PROCESSED


def handle_event(svc: Services, event_id: int, retries: int) -> Outcome:
    """Process an event, sorting failures into retry-later and dead-letter."""
    try:
        return Outcome(process_event(svc, event_id))
    except (TransientProviderError, OperationalError) as err:
        if retries >= svc.settings.max_retries:
            return dead_letter(svc, event_id, f"gave up after {retries + 1} attempts: {err}")
        _set_status(svc, event_id, EventStatus.FAILED, str(err))
        log.warning("event.retry event=%s attempt=%s error=%s", event_id, retries + 1, err)
        return Outcome(EventStatus.FAILED, retry_in=backoff(svc, retries))
    except ProviderError as err:
        return dead_letter(svc, event_id, str(err))


def dead_letter(svc: Services, event_id: int, error: str) -> Outcome:
    """Mark an event dead with its error and raise the alert; replay puts it back."""
    _set_status(svc, event_id, EventStatus.DEAD, error)
    log.error("alert.dead_letter event=%s error=%s", event_id, error)
    return Outcome(EventStatus.DEAD)


def backoff(svc: Services, retries: int) -> float:
    """Exponential backoff with equal jitter, capped."""
    ceiling = min(svc.settings.retry_backoff_max, svc.settings.retry_backoff * 2**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _set_status(svc: Services, event_id: int, status: str, error: str | None) -> None:
    now = utcnow()
    values: dict[str, object] = {"status": status, "last_error": error, "updated_at": now}
    if status == EventStatus.PROCESSED:
        values["processed_at"] = now
    with svc.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id == event_id).values(**values))


def stuck_events(svc: Services) -> list[int]:
    """Events that waited for a worker longer than the grace period: the sweeper enqueues them again."""
    return inbox.stuck_events(svc.engine, utcnow() - timedelta(seconds=svc.settings.sweep_grace))
