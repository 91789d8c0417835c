"""The admin pages over a large inbox: what `make bench` adds before timing them, and the timing.

Orders match the busy inbox's events (bench/busy.py names event i's order `3<i // 5>`, so an order
gets about five pushes): each order has two lines and the changes a month leaves (its first fetch;
every 10th a price correction, every 25th a refund, every 50th a closure), spread over the same
days as the events, so that the last 24 hours hold 1/days of them. The charts' Redis hashes get a
day of counts, as the web's and the worker's tallies would have written them.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import redis
import requests
from sqlalchemy import Engine, insert, select

from receiver import stats
from receiver.models import Order, OrderChange, OrderLine

CHUNK = 20_000


def order_id(k: int) -> str:
    """The provider order id of the k-th order, as busy.py's events name it."""
    return f"3{k:017d}"


def fill_orders(engine: Engine, orders: int, sources: tuple[str, ...], days: float,
                progress: Callable[[int], None] | None = None) -> int:
    """Add `orders` orders with their lines and changes, changed over the last `days` days; return the changes written."""
    from bench.busy import source_of

    newest = datetime.now(timezone.utc) - timedelta(minutes=1)
    step = days * 86400 / max(orders, 1)
    written = 0
    for start in range(0, orders, CHUNK):
        ks = range(start, min(start + CHUNK, orders))
        rows, changes = [], []
        for k in ks:
            at = newest - timedelta(seconds=(orders - k) * step)
            total = 23100 + k % 977
            status = "closed" if k % 50 == 0 else "shipped" if k % 3 else "awaiting_shipment"
            rows.append({"source": source_of(k * 5, sources), "platform": "1688", "provider_order_id": order_id(k),
                         "order_no": f"N{k:012d}", "purchase_id": None, "status": status, "raw_status": status,
                         "product_amount": total - 745, "shipping_fee": 745, "discount": 155 if k % 10 == 0 else 0,
                         "total_amount": total - (155 if k % 10 == 0 else 0), "refund_amount": 505 if k % 25 == 0 else 0,
                         "currency": "CNY", "modified_at": at, "fetched_at": at, "changed_at": at, "version": 2})
        with engine.begin() as conn:
            conn.execute(insert(Order), rows)
            ids = dict(conn.execute(select(Order.provider_order_id, Order.id).where(
                Order.provider_order_id.in_([order_id(k) for k in ks]))).all())
            lines = []
            for k in ks:
                oid, at = ids[order_id(k)], newest - timedelta(seconds=(orders - k) * step)
                first = at - timedelta(hours=2)
                total = 23100 + k % 977
                lines += [{"order_id": oid, "line_id": f"{order_id(k)}-{n}", "product_id": "736985424157", "sku_id": f"57390352942{n}",
                           "title": "bench line", "quantity": 3, "price": 3765 + n, "amount": 11295 + 3 * n,
                           "refund_amount": 505 if k % 25 == 0 and n == 0 else 0, "raw_status": "waitsellersend"} for n in (0, 1)]
                changes += [{"order_id": oid, "field": f, "old": None, "new": v, "at": first, "cause": f"event:{k * 5}"}
                            for f, v in (("status", "awaiting_shipment"), ("total_amount", str(total)), ("order_no", f"N{k:012d}"))]
                if k % 10 == 0:
                    changes.append({"order_id": oid, "field": "total_amount", "old": str(total), "new": str(total - 155), "at": at, "cause": f"event:{k * 5 + 1}"})
                if k % 25 == 0:
                    changes.append({"order_id": oid, "field": "refund_amount", "old": "0", "new": "505", "at": at, "cause": f"event:{k * 5 + 2}"})
                if k % 50 == 0:
                    changes.append({"order_id": oid, "field": "status", "old": "shipped", "new": "closed", "at": at, "cause": "reconcile"})
            conn.execute(insert(OrderLine), lines)
            conn.execute(insert(OrderChange), changes)
        written += len(changes)
        if progress:
            progress(ks[-1] + 1)
    return written


def fill_charts(broker_url: str, namespace: str, sources: tuple[str, ...]) -> None:
    """A day of per-minute counts on Redis, as the tallies write them (one flush per hour of the day)."""
    r = redis.Redis.from_url(broker_url)
    svc = SimpleNamespace(redis=r, key=lambda *parts: ":".join((namespace, *parts)))
    now = int(time.time() // 60)
    for hour in range(24):
        counts: Counter[tuple[int, str]] = Counter()
        for m in range(60):
            minute = now - hour * 60 - m
            for n, source in enumerate(sources):
                counts[minute, f"push:{source}:accepted"] = 40 + (minute + n) % 17
                counts[minute, f"refetch:{source}:processed"] = 30 + minute % 7
            counts[minute, "push:unknown:refused"] = minute % 3
            counts[minute, "ack:10"], counts[minute, "ack:25"], counts[minute, "ack:250"] = 150, 20, minute % 2
            counts[minute, "dead"] = 1 if minute % 97 == 0 else 0
        stats.flush(svc, +counts)  # type: ignore[arg-type]


def time_pages(base_url: str, token: str, pages: dict[str, str], reads: int) -> dict[str, list[float]]:
    """GET each page `reads` times after one warm-up read; milliseconds of each, failing on any non-200."""
    timings: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with requests.Session() as http:
        for name, path in pages.items():
            http.get(base_url + path, headers=headers, timeout=60)  # warm-up: templates, caches, the first connection
            timings[name] = []
            for _ in range(reads):
                started = time.perf_counter()
                resp = http.get(base_url + path, headers=headers, timeout=60)
                timings[name].append((time.perf_counter() - started) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"{path} answered {resp.status_code}")
    return timings


def line(name: str, ms: list[float], target: float) -> str:
    """One page's timings in a line: median, p95 and max, against the target."""
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    verdict = "met" if p95 < target else "NOT met"
    return f"{name:28s} median {statistics.median(ms):6.1f}  p95 {p95:6.1f}  max {max(ms):6.1f} ms  (target p95 < {target:g} ms: {verdict})"
