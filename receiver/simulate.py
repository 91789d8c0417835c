"""`receiver simulate`: change an order in the sandbox and send the provider's push to our callback URL."""
from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy.orm import Session, sessionmaker

from receiver.db import make_engine, make_sessionmaker
from receiver.errors import ProviderError, ReceiverError
from receiver.orders import COMPARED, find_order, order_json
from receiver.providers import OrderSnapshot, RawPush, Source, family_for


@dataclass(frozen=True)
class Delivery:
    """One push to send: which change it announces, and what goes over the wire."""

    order_id: str
    message_type: str
    headers: dict[str, str]
    body: bytes
    ignored: str | None = None  # why we would re-fetch nothing for it


def control_url(source: Source) -> str:
    """The sandbox control API behind a source whose base URL points at a sandbox."""
    url = urlsplit(source.base_url)
    return f"{url.scheme}://{url.netloc}/_control/{url.path.strip('/')}"


def _control(http: requests.Session, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(url, json=payload, timeout=10)
    if resp.status_code != 200:
        raise SystemExit(f"sandbox: {resp.json().get('error', resp.text)} ({url})")
    return resp.json()


def plan(
    http: requests.Session,
    source: Source,
    kind: str,
    order: str | None,
    count: int,
    duplicates: int,
    shuffle: bool,
    shape: str | None = None,
) -> list[Delivery]:
    """Make `count` changes in the sandbox; return their pushes (in `shape`), each sent 1 + `duplicates` times."""
    base = control_url(source)
    deliveries: list[Delivery] = []
    for _ in range(count):
        change = _control(http, f"{base}/change", {"kind": kind, "order_id": order, "shape": shape})
        first = _delivery(source, change)
        deliveries.append(first)
        for _ in range(duplicates):
            again = _control(http, f"{base}/redeliver", {"headers": first.headers, "body": change["body"]})
            deliveries.append(dataclasses.replace(first, headers=again["headers"], body=again["body"].encode()))
    if shuffle:
        random.shuffle(deliveries)
    return deliveries


def _delivery(source: Source, change: dict[str, Any]) -> Delivery:
    """A change's push as we read it: its type as the wire carries it (with a platform prefix, in
    some shapes), the order it names (a Taobao message names its purchase), and whether we act on it."""
    headers, body = change["headers"], change["body"].encode()
    try:
        push = family_for(source.family).parse_push(source, RawPush(headers, body, headers.get("Content-Type", "")))
    except ReceiverError:  # a push we would refuse still gets sent, to show what we answer
        return Delivery(change["order_id"], str(change["message_type"]), headers, body)
    order_id = push.order.order_id if push.order else change["order_id"]
    return Delivery(order_id, push.message_type, headers, body, None if push.actionable else push.ignored)


def send(http: requests.Session, receiver_url: str, source: Source, delivery: Delivery) -> tuple[int, float]:
    """POST one push to our callback URL; return the status code and the milliseconds it took."""
    started = time.perf_counter()
    resp = http.post(
        f"{receiver_url.rstrip('/')}/callbacks/{source.name}",
        params={"token": source.callback_token},
        data=delivery.body,
        headers=delivery.headers,
        timeout=10,
    )
    return resp.status_code, (time.perf_counter() - started) * 1000


def truth(http: requests.Session, source: Source, delivery: Delivery) -> OrderSnapshot:
    """The provider's current record of the order a push announces, through the real signed client."""
    family = family_for(source.family)
    push = family.parse_push(source, RawPush(delivery.headers, delivery.body, delivery.headers.get("Content-Type", "")))
    assert push.order is not None
    return family.fetch_orders(http, source, push.order)[0]


def ours(Session: sessionmaker[Session], source: Source, order_id: str) -> dict[str, Any] | None:
    """Our copy of the order, read from our own database."""
    with Session() as session:
        order = find_order(session, source.name, order_id)
        return order_json(order) if order else None


def wait_until_true(
    http: requests.Session,
    Session: sessionmaker[Session],
    source: Source,
    delivery: Delivery,
    timeout: float,
) -> dict[str, Any] | None:
    """Poll until our copy of the order equals the provider's; return it, or None on time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            want = truth(http, source, delivery)
        except ProviderError:
            want = None
        got = ours(Session, source, delivery.order_id)
        if want is not None and got is not None and all(got[f] == getattr(want, f) for f in COMPARED):
            return got
        time.sleep(0.2)
    return None


def run(
    source: Source,
    kind: str,
    receiver_url: str,
    database_url: str,
    order: str | None = None,
    count: int = 1,
    duplicates: int = 0,
    shuffle: bool = False,
    wait: bool = False,
    timeout: float = 30.0,
    echo: Callable[[str], None] = print,
    shape: str | None = None,
) -> int:
    """Simulate, print each push's status and (with `wait`) the re-fetched state; return an exit code."""
    http = requests.Session()
    deliveries = plan(http, source, kind, order, count, duplicates, shuffle, shape)
    failed = 0
    for i, d in enumerate(deliveries, 1):
        status, ms = send(http, receiver_url, source, d)
        failed += status != 200
        echo(f"push {i}/{len(deliveries)} {d.message_type} order={d.order_id} -> {status} ({ms:.0f} ms)")
    if not wait:
        return 1 if failed else 0
    engine = make_engine(database_url)
    try:
        return _report(http, make_sessionmaker(engine), source, deliveries, timeout, echo) or (1 if failed else 0)
    finally:
        engine.dispose()


def _report(
    http: requests.Session,
    Session: sessionmaker[Session],
    source: Source,
    deliveries: list[Delivery],
    timeout: float,
    echo: Callable[[str], None],
) -> int:
    """Wait for each order the pushes named and print our copy of it; 1 when one never matched."""
    for order_id, d in {d.order_id: d for d in deliveries}.items():
        if d.ignored:
            echo(f"order {order_id}: ignored, nothing to re-fetch: {d.ignored}")
            continue
        got = wait_until_true(http, Session, source, d, timeout)
        if got is None:
            echo(f"order {order_id}: not equal to the provider's state after {timeout:.0f}s")
            return 1
        amounts = ", ".join(f"{f}={got[f]}" for f in COMPARED[2:])
        echo(f"order {order_id} ({got['platform']}): status={got['status']} ({got['raw_status']}), {amounts} {got['currency']}, "
             f"version {got['version']}")
        for h in [h for h in got["history"] if h["field"] in COMPARED and h["old"] is not None][-5:]:
            echo(f"  {h['at']}  {h['field']}: {h['old']} -> {h['new']}  ({h['cause']})")
    return 0
