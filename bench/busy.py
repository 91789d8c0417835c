"""The busy inbox: what `make bench` adds to a database before its "busy inbox" part, and the reader
that loads /metrics and the admin inbox page while pushes arrive.

The inbox is filled as a month of production leaves it: mostly processed events, some ignored, a few
failed or dead, over several sources, received over the last `days` days (older than the retention
would be purged in production), each with a distinct dedupe key and nonce. Both databases get the
same mix, from the same slot tables: SQLite row by row from Python (executemany, one transaction per
chunk), PostgreSQL in SQL (INSERT ... SELECT ... FROM generate_series, one statement per chunk).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

CHUNK = 100_000
SLOTS = 100  # an event's profile is PROFILE_SLOTS[(i * 37) % SLOTS]: the same mix on both databases


@dataclass(frozen=True)
class Profile:
    """What one kind of stored event looks like."""

    status: str
    message_type: str
    kind: str
    platform: str | None
    platform_code: int
    attempts: int
    ignored_reason: str | None = None
    last_error: str | None = None


PROFILES = (
    Profile("processed", "1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", "1688", 1, 1),
    Profile("processed", "1688_ORDER_PAY_SUCCESS", "status", "1688", 1, 1),
    Profile("processed", "TAOBAO_ORDER_BUYER_VIEW_ORDER_BUYER_REFUND", "refund", "taobao", 0, 1),
    Profile("processed", "1688_LOGISTICS_SENDGOODS", "logistics", "1688", 1, 2),
    Profile("ignored", "1688_PRODUCT_RELATION_VIEW_PRODUCT_REPOST", "other", None, 1, 0,
            ignored_reason="the summary body names no order id"),
    Profile("failed", "1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", "1688", 1, 2,
            last_error="TransientProviderError: the provider answered 502"),
    Profile("dead", "TAOBAO_ORDER_CANCEL", "status", "taobao", 0, 5,
            last_error="ProviderError: order not found at the provider"),
)
# 86% processed (40 price, 25 status, 12 refund, 9 logistics), 12% ignored, 1% failed, 1% dead.
PROFILE_SLOTS = tuple([0] * 40 + [1] * 25 + [2] * 12 + [3] * 9 + [4] * 12 + [5] * 1 + [6] * 1)
assert len(PROFILE_SLOTS) == SLOTS


def source_of(i: int, sources: tuple[str, ...]) -> str:
    """The source of the i-th event: the first source gets the most, as one big account does."""
    weights = source_slots(len(sources))
    # i // SLOTS moves the source from one block of SLOTS events to the next: with i alone it would
    # follow the profile's slot, and every dead event would be one source's.
    return sources[weights[(i * 13 + i // SLOTS) % SLOTS]]


def source_slots(n: int) -> tuple[int, ...]:
    """SLOTS source indexes: half to the first source, the rest shared by the others."""
    if n == 1:
        return (0,) * SLOTS
    rest = SLOTS // 2
    return tuple([0] * (SLOTS - rest) + [1 + k % (n - 1) for k in range(rest)])


COLUMNS = ("source", "message_type", "kind", "platform", "order_id", "dedupe_key", "nonce", "content_type",
           "headers", "body", "status", "ignored_reason", "attempts", "last_error", "received_at", "updated_at", "processed_at")


def fill(engine: Engine, count: int, sources: tuple[str, ...], days: float, progress: Callable[[int], None] | None = None) -> None:
    """Add `count` events received over the last `days` days (the newest a minute ago) to the inbox."""
    newest = datetime.now(timezone.utc) - timedelta(minutes=1)
    step = days * 86400 / max(count, 1)  # seconds between two events: the i-th is (count - i) steps old
    if engine.dialect.name == "sqlite":
        _fill_sqlite(make_url(engine.url).database or "", count, sources, newest, step, progress)
    else:
        _fill_postgresql(engine, count, sources, newest, step, progress)


def _when(newest: datetime, seconds_ago: float) -> str:
    # SQLAlchemy's SQLite DATETIME text (UTC, no offset), as the receiver writes it.
    return (newest - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%d %H:%M:%S.%f")


def _fill_sqlite(path: str, count: int, sources: tuple[str, ...], newest: datetime, step: float,
                 progress: Callable[[int], None] | None) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a bench fixture: a crash means a new run, not lost pushes
        conn.execute("PRAGMA cache_size=-400000")  # 400 MB: the unique indexes take random inserts
        sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        for start in range(0, count, CHUNK):
            rows = [_sqlite_row(i, count, sources, newest, step) for i in range(start, min(start + CHUNK, count))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            if progress:
                progress(start + len(rows))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a WAL of a gigabyte is not what a month leaves
    finally:
        conn.close()


def _sqlite_row(i: int, count: int, sources: tuple[str, ...], newest: datetime, step: float) -> tuple[object, ...]:
    p = PROFILES[PROFILE_SLOTS[(i * 37) % SLOTS]]
    source = source_of(i, sources)
    order_id = None if p.status == "ignored" else f"3{i // 5:017d}"  # an order gets about five pushes
    received = _when(newest, (count - i) * step)
    done = _when(newest, (count - i) * step - 1.5)
    body_of_order = f'{{\\"orderId\\": \\"{order_id}\\", \\"orderStatus\\": 1, \\"totalAmount\\": {23100 + i % 100}}}'
    body = (f'{{"messageType": "{p.message_type}", "messageBody": "{body_of_order}", '
            f'"messagePlatform": {p.platform_code}, "timestamp": "{1780000000000 + i}"}}').encode()
    body_sha = hashlib.sha256(body).hexdigest()
    dedupe = hashlib.sha256(f"busy-inbox\n{source}\n{i}".encode()).hexdigest()
    headers = json.dumps({"access-key": f"ak-{source}", "content-length": str(len(body)), "content-type": "application/json",
                          "nonce-str": dedupe[:32], "signature": body_sha[:32], "timestamp": str(1780000000000 + i),
                          "user-agent": "Apache-HttpClient/4.5.13 (Java/1.8.0_371)", "user-id": "2100000000009"})
    return (source, p.message_type, p.kind, p.platform, order_id, dedupe, dedupe[:32], "application/json",
            headers, body, p.status, p.ignored_reason, p.attempts, p.last_error, received,
            done if p.status != "ignored" else received, done if p.status == "processed" else None)


def _fill_postgresql(engine: Engine, count: int, sources: tuple[str, ...], newest: datetime, step: float,
                     progress: Callable[[int], None] | None) -> None:
    # The profiles and slots as SQL literals: the statement is ours, the values constants of this module.
    def lit(value: object) -> str:
        return "NULL" if value is None else str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"

    profiles = ", ".join(
        f"({n}, {lit(p.status)}, {lit(p.message_type)}, {lit(p.kind)}, {lit(p.platform)}, {p.platform_code}, {p.attempts},"
        f" {lit(p.ignored_reason)}, {lit(p.last_error)})" for n, p in enumerate(PROFILES))
    slots = ", ".join(map(str, PROFILE_SLOTS))
    names = ", ".join(lit(s) for s in sources)
    source_index = ", ".join(str(k + 1) for k in source_slots(len(sources)))
    sql = f"""
        INSERT INTO events ({', '.join(COLUMNS)})
        SELECT source, message_type, kind, platform, order_id, dedupe, left(dedupe, 32),
               'application/json',
               json_build_object('access-key', 'ak-' || source, 'content-length', length(body)::text,
                                 'content-type', 'application/json', 'nonce-str', left(dedupe, 32),
                                 'signature', left(encode(sha256(body), 'hex'), 32), 'timestamp', ts,
                                 'user-agent', 'Apache-HttpClient/4.5.13 (Java/1.8.0_371)', 'user-id', '2100000000009')::text,
               body, status, ignored_reason, attempts, last_error, received,
               CASE WHEN status = 'ignored' THEN received ELSE received + interval '1.5 s' END,
               CASE WHEN status = 'processed' THEN received + interval '1.5 s' END
        FROM (
            SELECT e.*, convert_to(format('{{"messageType": "%s", "messageBody": "{{\\"orderId\\": \\"%s\\", \\"orderStatus\\": 1, '
                                          '\\"totalAmount\\": %s}}", "messagePlatform": %s, "timestamp": "%s"}}',
                                          message_type, order_id, 23100 + i % 100, platform_code, ts), 'UTF8') AS body
            FROM (
                SELECT g.i, p.*, s.source,
                       CASE WHEN p.status = 'ignored' THEN NULL ELSE '3' || lpad((g.i / 5)::text, 17, '0') END AS order_id,
                       encode(sha256(convert_to('busy-inbox' || chr(10) || s.source || chr(10) || g.i, 'UTF8')), 'hex') AS dedupe,
                       (1780000000000 + g.i)::text AS ts,
                       CAST(:newest AS timestamptz) - make_interval(secs => (:count - g.i) * CAST(:step AS double precision)) AS received
                FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g(i)
                JOIN (VALUES {profiles}) AS p(n, status, message_type, kind, platform, platform_code, attempts, ignored_reason, last_error)
                  ON p.n = (ARRAY[{slots}])[1 + (g.i * 37) % {SLOTS}]
                CROSS JOIN LATERAL (SELECT (ARRAY[{names}])[(ARRAY[{source_index}])[1 + (g.i * 13 + g.i / {SLOTS}) % {SLOTS}]] AS source) AS s
            ) AS e
        ) AS row
    """
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count) - 1
        with engine.begin() as conn:
            conn.execute(text(sql), {"newest": newest, "count": count, "step": step, "start": start, "stop": stop})
        if progress:
            progress(stop + 1)
    # Autovacuum would otherwise analyse the million new rows during the run: a month-old table
    # has long been vacuumed and analysed. And its pages have long been written: without the
    # CHECKPOINT the fill's gigabyte of dirty pages is written during the run, by a checkpoint spread
    # over minutes, which took 0.4-0.7 of a core from the pushes (docs/benchmarks.md).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE events"))
        conn.execute(text("CHECKPOINT"))


@dataclass
class Read:
    """One read of a page while pushes arrive."""

    name: str
    at: float  # seconds since the reader started
    ms: float
    status: int | str  # the HTTP status, or the exception's name


@dataclass
class Reader:
    """A thread that GETs each of `pages` every `interval` seconds and records each read."""

    base_url: str
    pages: dict[str, tuple[str, dict[str, str]]]  # name: (path, headers)
    interval: float = 5.0
    until: float = float("inf")  # no read starts this many seconds after the start: the pushes are over
    delay: float = 1.0  # the first reads, after wrk has started
    timeout: float = 30.0
    reads: list[Read] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-inbox-reader", daemon=True)

    def start(self) -> Reader:
        """Start reading in the background."""
        self._thread.start()
        return self

    def stop(self) -> list[Read]:
        """Stop after the read in flight, if any; return every read."""
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return self.reads

    def _run(self) -> None:
        started = time.monotonic()
        tick = started + self.delay
        while tick - started < self.until and not self._stop.wait(max(0.0, tick - time.monotonic())):
            for name, (path, headers) in self.pages.items():
                at = time.monotonic()
                try:
                    status: int | str = requests.get(self.base_url + path, headers=headers, timeout=self.timeout).status_code
                except requests.RequestException as err:
                    status = type(err).__name__
                self.reads.append(Read(name, at - started, (time.monotonic() - at) * 1000, status))
            tick += self.interval


def summary(reads: list[Read], name: str) -> str:
    """A page's reads in a line: how many, the statuses, median and max latency, each latency in order."""
    mine = [r for r in reads if r.name == name]
    if not mine:
        return f"{name}: no reads"
    statuses: dict[str, int] = {}
    for r in mine:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    ms = [r.ms for r in mine]
    return (f"{name}: {len(mine)} reads ({', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))}),"
            f" median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms"
            f"  [{', '.join(f'{r.ms:.0f}' for r in mine)}]")
