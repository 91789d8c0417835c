"""The inbox: the one owner of the events table.

Every push is stored raw, in one short transaction, before we answer (`store_push`, the hot path);
every later change of an event's status (queued, processed, ignored, failed, dead, reopened for a
replay, purged) goes through the functions below, so that the rules (a final status is never
undone, a replay reopens only what it may) hold in one place, and so does the filtered listing the
admin inbox, the API and the CLI share. The worker's pipeline decides what happens; this module
writes it down. (Pages that read one event or count a few statuses query the table themselves.)
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, Select, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter

from receiver.db import DriverStatement, driver_cursor
from receiver.errors import ReplayedNonce
from receiver.models import Event, EventStatus, SpentNonce, utcnow
from receiver.providers import KEPT_HEADERS, Push, RawPush

if TYPE_CHECKING:
    from receiver.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """The outcome of storing a push."""

    event_id: int | None  # None: a duplicate of an event we hold
    duplicate: bool


# INSERT ... ON CONFLICT DO NOTHING: a duplicate costs one statement and no exception.
_INSERT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
NONCE_COLUMNS = ("source", "nonce", "seen_at")
EVENT_COLUMNS = ("source", "message_type", "kind", "platform", "order_id", "dedupe_key", "nonce", "content_type", "headers",
                 "body", "status", "ignored_reason", "attempts", "received_at", "updated_at")


@dataclass(frozen=True)
class _Statements:
    """The inbox's statements, compiled once per engine."""

    insert: DriverStatement  # the event unless its nonce is in `nonces`, returning its id; none for a conflict
    spent: DriverStatement  # is the nonce in `nonces`?
    holder: DriverStatement  # the dedupe key of the event that holds the nonce, if one does
    spend: DriverStatement  # put the nonce in `nonces`


@cache
def _statements(engine: Engine) -> _Statements:
    events, nonces = Event.__table__, SpentNonce.__table__
    insert = _INSERT[engine.dialect.name]
    source: BindParameter[str] = bindparam("source")
    nonce: BindParameter[str] = bindparam("nonce")
    in_nonces = (nonces.c.source == source, nonces.c.nonce == nonce)
    # INSERT ... SELECT ... WHERE NOT EXISTS: the nonce check and the insert in one statement.
    row = select(*(bindparam(name, type_=events.c[name].type) for name in EVENT_COLUMNS)).where(~exists().where(*in_nonces))
    store = insert(events).from_select(EVENT_COLUMNS, row).on_conflict_do_nothing()
    return _Statements(
        # SQLite: no RETURNING, whose statement would stay open, the write lock with it, until the row
        # is fetched; the new id is the cursor's lastrowid.
        insert=DriverStatement.compile(engine, store if engine.dialect.name == "sqlite" else store.returning(events.c.id)),
        spent=DriverStatement.compile(engine, select(nonces.c.nonce).where(*in_nonces)),
        holder=DriverStatement.compile(
            engine, select(events.c.dedupe_key).where(events.c.source == source, events.c.nonce == nonce)
        ),
        spend=DriverStatement.compile(engine, insert(nonces).on_conflict_do_nothing(), NONCE_COLUMNS),
    )


def event_values(source: str, raw: RawPush, push: Push, nonce: str | None, now: datetime) -> dict[str, Any]:
    """The inbox row of a push: every column of EVENT_COLUMNS."""
    headers = {name: value for name in KEPT_HEADERS if (value := raw.headers.get(name)) is not None}
    return {
        "source": source,
        "message_type": push.message_type,
        "kind": push.kind,
        "platform": push.order.platform if push.order else None,
        "order_id": push.order.order_id if push.order else None,
        "dedupe_key": push.dedupe_key,
        "nonce": nonce,
        "content_type": raw.content_type[:128],
        "headers": json.dumps(headers),  # KEPT_HEADERS is sorted
        "body": raw.body,
        "status": EventStatus.RECEIVED if push.actionable else EventStatus.IGNORED,
        "ignored_reason": push.ignored_reason,
        "attempts": 0,
        "received_at": now,
        "updated_at": now,
    }


def store_push(
    engine: Engine, source: str, raw: RawPush, push: Push, nonce: str | None = None, received_at: datetime | None = None
) -> Stored:
    """Insert the raw event unless its dedupe key is already in the inbox; commit before returning.

    A nonce is spent once: by the event it arrives with (`events.nonce`, unique per source), or, when
    the push is a duplicate, in `nonces`. A push whose nonce is spent is refused (ReplayedNonce),
    unless it is the very push that spent it, sent again because our answer was lost: a duplicate.
    The INSERT itself refuses a spent nonce, and a nonce is spent only once the push is stored or
    known to be a duplicate, so a push we could not store leaves no nonce behind to refuse its retry.
    """
    now = received_at or utcnow()
    values = event_values(source, raw, push, nonce, now)
    sql = _statements(engine)
    try:
        event_id = _insert(engine, sql, values)
    except DBAPIError as err:
        if not err.connection_invalidated:
            raise
        # The pooled connection was lost (the inbox's engine does not ping it first): once more, on a
        # fresh one. If the first INSERT was committed before the loss, this one finds it: a duplicate.
        log.warning("inbox.connection_lost source=%s", source)
        event_id = _insert(engine, sql, values)
    if event_id is None and nonce is not None:  # a duplicate, or a replay; the INSERT wrote nothing
        with driver_cursor(engine) as cursor:
            _spend(cursor, sql, {"source": source, "nonce": nonce}, now, same_push=push.dedupe_key)
    return Stored(event_id=event_id, duplicate=event_id is None)


def _insert(engine: Engine, sql: _Statements, values: Mapping[str, Any]) -> int | None:
    """Run the inbox INSERT; the new event's id, or None when it stored nothing."""
    # The INSERT alone is the transaction (one round trip on PostgreSQL): a push stored is committed.
    with driver_cursor(engine, autocommit=True) as cursor:
        cursor.execute(sql.insert.sql, sql.insert.params(values))
        return _inserted_id(cursor)


def _inserted_id(cursor: Any) -> int | None:
    """The id of the row the inbox INSERT stored, or None when it stored none."""
    if cursor.description is not None:  # RETURNING
        row = cursor.fetchone()
        return row[0] if row else None
    return cursor.lastrowid if cursor.rowcount == 1 else None


def spend_nonce(engine: Engine, source: str, nonce: str) -> None:
    """Spend the nonce of a push refused after its signature was checked; ReplayedNonce if it was spent."""
    with driver_cursor(engine) as cursor:
        _spend(cursor, _statements(engine), {"source": source, "nonce": nonce}, utcnow())


def _spend(cursor: Any, sql: _Statements, by_nonce: Mapping[str, str], now: datetime, same_push: str | None = None) -> None:
    """Put a nonce nobody spent into `nonces`; ReplayedNonce if it is there already, or if an event
    holds it, unless that event is `same_push` (its dedupe key): the very push, sent again."""
    if _first(cursor, sql.spent, by_nonce) is not None:
        raise ReplayedNonce("nonce seen before")
    holder = _first(cursor, sql.holder, by_nonce)
    if holder is None:
        cursor.execute(sql.spend.sql, sql.spend.params({**by_nonce, "seen_at": now}))
    elif holder[0] != same_push:
        raise ReplayedNonce("nonce seen before")


def forget_nonces(engine: Engine, window: int) -> int:
    """Delete the spent nonces seen over twice the timestamp window ago; return how many.

    Twice: a timestamp may be up to a window ahead of our clock, and its nonce must outlive every
    moment that timestamp still passes the window check.
    """
    with engine.begin() as conn:
        stmt = delete(SpentNonce).where(SpentNonce.seen_at < utcnow() - timedelta(seconds=2 * window))
        return conn.execute(stmt).rowcount


def _first(cursor: Any, stmt: DriverStatement, values: Mapping[str, Any]) -> Any:
    cursor.execute(stmt.sql, stmt.params(values))
    return cursor.fetchone()


def event_headers(event: Event) -> Mapping[str, str]:
    """The stored headers of an event."""
    return json.loads(event.headers)


def raw_push(event: Event) -> RawPush:
    """The push an event was stored from, to parse again in the worker."""
    return RawPush(headers=event_headers(event), body=event.body, content_type=event.content_type)


# The inbox's counts by source and status may be a few seconds old (RECEIVER_COUNTS_TTL): counting a
# large inbox costs a scan (0.2-0.6 s of a request thread at a million events on PostgreSQL), and
# /metrics and the admin pages ask for them on every view. The count is shared between processes in
# Redis, and one process at a time counts again when it runs out; each keeps its copy for the TTL.
Counts = dict[tuple[str, str, str, str | None], int]
COUNTS_KEY = "inbox-counts"  # under the namespace
COUNT_LOCK_SECONDS = 10  # the longest a count may hold the others off; a holder that died frees it then
_counts: dict[int, tuple[float, Counts]] = {}  # id(read engine): (when counted, wall clock; the counts)
_counting = threading.Lock()  # one scan at a time in a process, not one per thread


def inbox_counts(read_engine: Engine, ttl: float, redis: Redis | None = None, key: str = "inbox-counts") -> Counts:
    """Events by (source, status, kind, platform), at most `ttl` seconds old, read off the writer's path;
    shared through `redis` under `key` when given (a stale count while another process counts)."""
    cached = _counts.get(id(read_engine))
    if cached is not None and time.time() - cached[0] < ttl:
        return cached[1]
    with _counting:
        cached = _counts.get(id(read_engine))
        if cached is not None and time.time() - cached[0] < ttl:  # another thread just counted
            return cached[1]
        # A TTL of 0 asks for the counts as they are now: nothing shared can be that fresh.
        counted = _shared_counts(read_engine, ttl, redis, key) if redis is not None and ttl > 0 else None
        if counted is None:
            counted = (time.time(), _count(read_engine))
        _counts[id(read_engine)] = counted
        return counted[1]


def current_counts(svc: Services) -> Counts:
    """The counts as /metrics and the pages read them: RECEIVER_COUNTS_TTL old at most, shared through Redis."""
    return inbox_counts(svc.read_engine, svc.settings.counts_ttl, svc.redis, svc.key(COUNTS_KEY))


def current_status_counts(svc: Services) -> dict[tuple[str, str], int]:
    """Events by (source, status), from `current_counts`."""
    return status_counts(svc.read_engine, svc.settings.counts_ttl, svc.redis, svc.key(COUNTS_KEY))


def _shared_counts(read_engine: Engine, ttl: float, redis: Redis, key: str) -> tuple[float, Counts] | None:
    """The counts in Redis if fresh; else counted here, unless another process is counting: then the
    last counts, however old. None when Redis fails or holds no counts while another process counts."""
    lock = f"{key}:lock"
    try:
        held = redis.get(key)
        last = None if held is None else _decode(held)
        if last is not None and time.time() - last[0] < ttl:
            return last
        if not redis.set(lock, "1", nx=True, ex=COUNT_LOCK_SECONDS):
            return last  # rather than wait for the other count or run one more beside it
    except RedisError as err:
        log.warning("inbox.counts_unshared error=%s", err.__class__.__name__)
        return None
    counted = (time.time(), _count(read_engine))
    try:
        with redis.pipeline() as pipe:
            # Kept long after the TTL: while one process counts again, the others serve these.
            pipe.set(key, json.dumps([counted[0], [[*group, n] for group, n in counted[1].items()]]), ex=3600)
            pipe.delete(lock)  # (after COUNT_LOCK_SECONDS it may be another's: then one more count runs)
            pipe.execute()
    except RedisError as err:
        log.warning("inbox.counts_unshared error=%s", err.__class__.__name__)
    return counted


def _decode(held: bytes | str) -> tuple[float, Counts]:
    at, rows = json.loads(held)
    return at, {(source, status, kind, platform): n for source, status, kind, platform, n in rows}


def _count(read_engine: Engine) -> Counts:
    columns = (Event.source, Event.status, Event.kind, Event.platform)
    with read_engine.connect() as conn:
        rows = conn.execute(select(*columns, func.count()).group_by(*columns)).all()
    return {(source, status, kind, platform): n for source, status, kind, platform, n in rows}


def status_counts(
    read_engine: Engine, ttl: float, redis: Redis | None = None, key: str = "inbox-counts"
) -> dict[tuple[str, str], int]:
    """Events by (source, status), from `inbox_counts`."""
    totals: dict[tuple[str, str], int] = {}
    for (source, status, _, _), n in inbox_counts(read_engine, ttl, redis, key).items():
        totals[source, status] = totals.get((source, status), 0) + n
    return totals


PURGE_BATCH = 1000
PURGE_PAUSE = 0.05  # seconds between batches: pushes get the writer in between


def purge_events(
    engine: Engine, statuses: tuple[str, ...], before: datetime, source: str | None = None, budget: float = 30.0
) -> int:
    """Delete events in `statuses` untouched since `before` (a replayed one counts from its replay), a
    batch at a time so that no transaction holds the writer long; stop after `budget` seconds (the
    next run goes on). Return how many went."""
    deleted, deadline = 0, time.monotonic() + budget
    matches = [Event.status.in_(statuses), Event.updated_at < before, *([Event.source == source] if source else [])]
    while time.monotonic() < deadline:
        with engine.begin() as conn:
            ids = list(conn.scalars(select(Event.id).where(*matches).order_by(Event.updated_at).limit(PURGE_BATCH)))
            # The conditions again: an event replayed since the SELECT is no longer one to delete.
            gone = conn.execute(delete(Event).where(Event.id.in_(ids), *matches)).rowcount if ids else 0
        deleted += gone
        if len(ids) < PURGE_BATCH:
            break
        time.sleep(PURGE_PAUSE)
    return deleted


# --- the lifecycle after the INSERT ----------------------------------------------------------------
WAITING = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED)
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.DEAD})
# Every status but `ignored`: an ignored push names nothing to re-fetch, a replay would change nothing.
REOPENABLE = (*WAITING, EventStatus.PROCESSED, EventStatus.DEAD)


def mark_queued(engine: Engine, event_ids: list[int]) -> None:
    """Note that these events are on the queue (only those still waiting to be)."""
    stmt = (
        update(Event)
        .where(Event.id.in_(event_ids), Event.status.in_([EventStatus.RECEIVED, EventStatus.QUEUED]))
        .values(status=EventStatus.QUEUED, updated_at=utcnow())
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def set_status(engine: Engine, event_ids: list[int], status: str, error: str | None, ignored: str | None = None) -> int:
    """Move events on, but never out of a final status (a late duplicate must not undo a result);
    return how many moved."""
    if not event_ids:
        return 0
    now = utcnow()
    values: dict[str, object] = {"status": status, "last_error": error, "updated_at": now}
    values["ignored_reason"] = ignored and ignored[:255]
    if status == EventStatus.PROCESSED:
        values["processed_at"] = now
    stmt = update(Event).where(Event.id.in_(event_ids), Event.status.in_(WAITING)).values(**values)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


def count_attempt(engine: Engine, event_ids: list[int]) -> None:
    """Count an attempt; `updated_at` tells the sweeper a worker has these events in hand."""
    if event_ids:
        with engine.begin() as conn:
            conn.execute(update(Event).where(Event.id.in_(event_ids)).values(attempts=Event.attempts + 1, updated_at=utcnow()))


def exhausted(engine: Engine, event_ids: list[int], max_retries: int) -> list[int]:
    """Those of the events that have had every attempt `max_retries` allows."""
    with engine.connect() as conn:
        return list(conn.scalars(select(Event.id).where(Event.id.in_(event_ids), Event.attempts > max_retries)))


def waiting_for(engine: Engine, source: str, order_id: str) -> list[int]:
    """Ids of an order's events that wait for a re-fetch: the ones the next re-fetch covers."""
    stmt = select(Event.id).where(Event.source == source, Event.order_id == order_id, Event.status.in_(WAITING))
    with engine.connect() as conn:
        return list(conn.scalars(stmt))


def stuck(engine: Engine, grace: timedelta, retry_lost: timedelta) -> list[int]:
    """Events no worker took within `grace`, and failed ones whose retry never came within `retry_lost`."""
    now = utcnow()
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
    with engine.connect() as conn:
        return list(conn.scalars(stmt))


def reopen(engine: Engine, event_ids: list[int]) -> list[int]:
    """Put dead or failed events back to `received` for a replay; return those that were reopened."""
    if not event_ids:
        return []
    stmt = (
        update(Event)
        .where(Event.id.in_(event_ids), Event.status.in_(REOPENABLE))
        .values(status=EventStatus.RECEIVED, last_error=None, updated_at=utcnow())
        .returning(Event.id)
    )
    with engine.begin() as conn:
        return sorted(conn.scalars(stmt))


def select_for_replay(engine: Engine, status: str, source: str | None, since: datetime | None) -> list[int]:
    """Ids of the events a replay by filter would put back."""
    stmt = select(Event.id).where(Event.status == status)
    if source:
        stmt = stmt.where(Event.source == source)
    if since:
        stmt = stmt.where(Event.received_at >= since)
    with engine.connect() as conn:
        return list(conn.scalars(stmt.order_by(Event.id)))


# --- reads -------------------------------------------------------------------------------------------
def listing(status: str | None = None, source: str | None = None, order: str | None = None) -> Select[Event]:
    """Events newest first, filtered: the one query behind the admin inbox, the API and the CLI."""
    stmt = select(Event)
    if status:
        stmt = stmt.where(Event.status == status)
    if source:
        stmt = stmt.where(Event.source == source)
    if order:
        stmt = stmt.where(Event.order_id == order)
    return stmt.order_by(Event.id.desc())
