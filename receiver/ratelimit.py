"""A token bucket per source in Redis, shared by every worker (Celery's rate_limit is per worker)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import redis

# Refill by elapsed time on Redis's own clock, take one token if there is one, and answer how many
# milliseconds to wait otherwise. One script, so concurrent workers cannot both take the last token.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + (now_ms - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RateLimiter:
    """Blocks until the source's bucket gives a token for one outbound API call."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.script = client.register_script(_TAKE)
        self.prefix = prefix

    def wait_ms(self, source: str, rate: float, burst: int) -> int:
        """Take a token if one is free (0), else say how many ms until one will be."""
        return int(self.script(keys=[f"{self.prefix}:{source}"], args=[rate, burst]))

    def acquire(self, source: str, rate: float, burst: int) -> float:
        """Wait for a token; return the seconds spent waiting."""
        waited = 0.0
        while (ms := self.wait_ms(source, rate, burst)) > 0:
            time.sleep(ms / 1000)
            waited += ms / 1000
        return waited


class LimitedHttp:
    """An HTTP session whose every call first takes a token of its source's bucket: a re-fetch that
    needs more than one call (a refund query beside the order) stays inside the limit."""

    def __init__(self, http: Any, limiter: RateLimiter, source: str, rate: float, burst: int) -> None:
        self.http, self.limiter = http, limiter
        self.source, self.rate, self.burst = source, rate, burst
        self.started: datetime | None = None  # when the first call since `reset` went out

    def reset(self) -> None:
        """Forget when the calls so far went out: the next one starts a new fetch."""
        self.started = None

    def get(self, url: str, **kwargs: Any) -> Any:
        """GET, once a token is free."""
        self._take()
        return self.http.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        """POST, once a token is free."""
        self._take()
        return self.http.post(url, **kwargs)

    def _take(self) -> None:
        self.limiter.acquire(self.source, self.rate, self.burst)
        # A fetch's start is when it asked, not when it began to wait: staleness is judged by it.
        self.started = self.started or datetime.now(timezone.utc)
