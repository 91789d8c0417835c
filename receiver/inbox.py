"""The inbox: every push stored raw, in one short transaction, before we answer."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Mapping

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from receiver.db import DriverStatement, driver_cursor
from receiver.errors import ReplayedNonce
from receiver.models import Event, EventStatus, utcnow
from receiver.providers import Push, RawPush

# Headers worth keeping with the raw event; cookies and proxies' own headers are not.
KEPT_HEADERS = frozenset(
    {"content-type", "content-length", "user-agent", "access-key", "timestamp", "nonce-str", "signature", "user-id"}
)


@dataclass(frozen=True)
class Stored:
    """The outcome of storing a push."""

    event_id: int | None  # None: a duplicate of an event we hold
    duplicate: bool


# INSERT ... ON CONFLICT DO NOTHING: a duplicate costs one statement and no exception.
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
EVENT_COLUMNS = ("source", "message_type", "kind", "platform", "order_id", "dedupe_key", "nonce", "body_sha256",
                 "content_type", "headers", "body", "status", "attempts", "received_at", "updated_at")


@cache
def _statements(engine: Engine) -> tuple[DriverStatement, DriverStatement]:
    """The inbox INSERT (returning the new id, none for a conflict) and the query for a seen nonce."""
    table = Event.__table__
    insert = _INSERT[engine.dialect.name](table).on_conflict_do_nothing().returning(table.c.id)
    seen = select(table.c.id).where(table.c.source == bindparam("source"), table.c.nonce == bindparam("nonce"))
    return DriverStatement.compile(engine, insert, EVENT_COLUMNS), DriverStatement.compile(engine, seen)


def store_push(
    engine: Engine, source: str, raw: RawPush, push: Push, nonce: str | None = None, received_at: datetime | None = None
) -> Stored:
    """Insert the raw event unless its dedupe key is already in the inbox; commit before returning.

    The nonce is stored with the event under a unique (source, nonce), so a replay is refused
    (ReplayedNonce) by the same INSERT, and a push we could not store leaves no nonce behind to
    refuse its retry. A redelivery's nonce is not kept (its event is not): a replay of it is a
    duplicate again, answered 200 and stored nowhere.
    """
    headers = {k.lower(): v for k, v in raw.headers.items() if k.lower() in KEPT_HEADERS}
    values = {
        "source": source,
        "message_type": push.message_type,
        "kind": push.kind,
        "platform": push.order.platform if push.order else None,
        "order_id": push.order.order_id if push.order else None,
        "dedupe_key": push.dedupe_key,
        "nonce": nonce,
        "body_sha256": hashlib.sha256(raw.body).hexdigest(),
        "content_type": raw.content_type[:128],
        "headers": json.dumps(headers, sort_keys=True),
        "body": raw.body,
        "status": EventStatus.RECEIVED if push.actionable else EventStatus.IGNORED,
        "attempts": 0,
        "received_at": received_at or utcnow(),
        "updated_at": received_at or utcnow(),
    }
    insert, seen = _statements(engine)
    with driver_cursor(engine) as cursor:
        cursor.execute(insert.sql, insert.params(values))
        row = cursor.fetchone()
        # Nothing inserted: a duplicate, or a replay. Only then is a second statement needed.
        if row is None and nonce is not None:
            cursor.execute(seen.sql, seen.params({"source": source, "nonce": nonce}))
            if cursor.fetchone() is not None:
                raise ReplayedNonce("nonce seen before")
    event_id = row[0] if row else None
    return Stored(event_id=event_id, duplicate=event_id is None)


def mark_queued(engine: Engine, event_ids: list[int]) -> None:
    """Note that these events are on the queue (only those still waiting to be)."""
    stmt = (
        update(Event)
        .where(Event.id.in_(event_ids), Event.status.in_([EventStatus.RECEIVED, EventStatus.QUEUED]))
        .values(status=EventStatus.QUEUED, updated_at=utcnow())
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def event_headers(event: Event) -> Mapping[str, str]:
    """The stored headers of an event."""
    return json.loads(event.headers)


def raw_push(event: Event) -> RawPush:
    """The push an event was stored from, to parse again in the worker."""
    return RawPush(headers=event_headers(event), body=event.body, content_type=event.content_type)
