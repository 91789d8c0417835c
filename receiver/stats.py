"""The front page's charts: counts per minute and per hour on Redis, written off the request path.

Whatever is counted (a push answered, its ack latency bucket, a re-fetch's outcome, dead letters) is
handed to this process's `Tally` thread, an in-memory queue put, never a Redis call in the request.
The thread gathers what came within a second and adds it with one pipelined round trip of HINCRBYs
to two hashes per minute it saw: `<ns>:stats:m:<minute>` (kept 2 hours: the last hour per minute)
and `<ns>:stats:h:<hour>` (kept 25 hours: the day per hour). HINCRBY adds up, so every gunicorn
worker and every Celery process writes the same keys and the page reads their sum. The queue depth
is a sample the beat's backlog check writes once a minute. Counts in a process that dies within
the second are lost; the charts are a picture, not the ledger (that is the inbox).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from flask import current_app, has_app_context
from redis.exceptions import RedisError

from receiver.publisher import ProcessThread
from receiver.services import Services

log = logging.getLogger("receiver.stats")
MINUTE_TTL = 2 * 3600
HOUR_TTL = 25 * 3600
LINGER = 1.0  # seconds a batch gathers before its one round trip
# Upper bounds of the ack latency buckets in milliseconds; p50 and p99 are read as the bound of the
# bucket they fall in (so "25 ms" means 10-25 ms), "> 2500" beyond the last.
ACK_BUCKETS_MS = (2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
# Records the max of a field and the value given (the hour's highest queue depth).
_HMAX = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""


def minute_key(svc: Services, minute: int) -> str:
    """The hash of one minute (minutes since the epoch)."""
    return svc.key("stats", "m", str(minute))


def hour_key(svc: Services, hour: int) -> str:
    """The hash of one hour (hours since the epoch)."""
    return svc.key("stats", "h", str(hour))


def push_outcome(code: int) -> str:
    """A push's answer as the charts sort it: accepted (2xx), refused (4xx, ours to fix or theirs) or failed (5xx)."""
    return "accepted" if code < 400 else "refused" if code < 500 else "failed"


def ack_bucket(seconds: float) -> str:
    """The latency bucket of an answer: the smallest bound in ACK_BUCKETS_MS it is within, or "inf"."""
    ms = seconds * 1000
    return next((str(b) for b in ACK_BUCKETS_MS if ms <= b), "inf")


def percentile(buckets: dict[str, int], q: float) -> str:
    """The bucket bound under which a share `q` of the answers fell: "25" (ms), "inf", or "" for none."""
    total = sum(buckets.values())
    if not total:
        return ""
    seen = 0
    for bound in [*map(str, ACK_BUCKETS_MS), "inf"]:
        seen += buckets.get(bound, 0)
        if seen >= q * total:
            return bound
    return "inf"


def flush(svc: Services, counts: Counter[tuple[int, str]]) -> None:
    """Add counts of (minute, field) to the minute and hour hashes, in one pipelined round trip."""
    pipe = svc.redis.pipeline(transaction=False)
    keys: dict[str, int] = {}
    for (minute, field), n in counts.items():
        for key, ttl in ((minute_key(svc, minute), MINUTE_TTL), (hour_key(svc, minute // 60), HOUR_TTL)):
            pipe.hincrby(key, field, n)
            keys[key] = ttl
    for key, ttl in keys.items():
        pipe.expire(key, ttl)
    pipe.execute()


def sample_queue(svc: Services, depth: int, now: float | None = None) -> None:
    """Record the queue's depth now: the minute's value and the hour's highest."""
    minute = int((now if now is not None else time.time()) // 60)
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hset(minute_key(svc, minute), "queue", depth)
    pipe.expire(minute_key(svc, minute), MINUTE_TTL)
    pipe.eval(_HMAX, 1, hour_key(svc, minute // 60), "queue", depth, HOUR_TTL)
    pipe.execute()


class Tally(ProcessThread):
    """One per process: counts handed over by `note` reach Redis from a thread, a batch a second."""

    name = "stats"
    max_pending = 200_000  # past this many unflushed counts (Redis away), more are dropped

    def note(self, fields: Iterable[str], amount: int = 1, now: float | None = None) -> None:
        """Count `amount` for each field in the current minute; never blocks, never raises."""
        minute = int((now if now is not None else time.time()) // 60)
        self.put((minute, tuple(fields), amount))

    def _run(self) -> None:
        while True:
            batch = self.take(self.max_pending, LINGER)
            counts: Counter[tuple[int, str]] = Counter()
            for minute, fields, amount in batch:
                for field in fields:
                    counts[minute, field] += amount
            try:
                flush(self.app.extensions["receiver"], counts)
            except (RedisError, OSError) as err:
                log.warning("stats.unflushed counts=%s error=%s", len(counts), err.__class__.__name__)
            except Exception:  # noqa: BLE001 - the thread must live on
                log.exception("stats.unflushed counts=%s", len(counts))


def note(fields: Iterable[str], amount: int = 1) -> None:
    """Count fields for the charts in this process's tally; nothing outside an app (plain function tests)."""
    if has_app_context() and "stats" in current_app.extensions:
        current_app.extensions["stats"].note(fields, amount)


def read(svc: Services, now: float | None = None) -> dict[str, Any]:
    """The last 24 hours per hour and the last 60 minutes per minute, oldest first, in one round trip."""
    minute = int((now if now is not None else time.time()) // 60)
    hours = list(range(minute // 60 - 23, minute // 60 + 1))
    minutes = list(range(minute - 59, minute + 1))
    pipe = svc.redis.pipeline(transaction=False)
    for h in hours:
        pipe.hgetall(hour_key(svc, h))
    for m in minutes:
        pipe.hgetall(minute_key(svc, m))
    got = [{_text(k): int(v) for k, v in h.items()} for h in pipe.execute()]
    per_hour, per_minute = got[: len(hours)], got[len(hours):]
    return {"hours": list(zip(hours, per_hour, strict=True)), "minutes": list(zip(minutes, per_minute, strict=True))}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
