"""The pushes the benchmark sends, written as request files for bench/push.lua.

Every push is distinct (the receiver dedupes identical bodies) and, when signed, carries a fresh
nonce and the current time (the receiver refuses a replayed nonce or a stale timestamp), so a file is
good for one run within the timestamp window.
"""
from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from receiver.providers import xportcn as spec
from receiver.sandbox.xportcn import XportcnProvider

PRICE_1688 = "1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY"


@dataclass(frozen=True)
class Credentials:
    """One Xportcn-family account: what the provider signs with and what our callback URL checks."""

    access_key: str
    access_secret: str
    user_id: str
    callback_token: str


@dataclass(frozen=True)
class Push:
    """One request to send."""

    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Burst:
    """The burst's pushes in sending order, and what the receiver should end up with."""

    pushes: list[Push]
    distinct_bodies: set[str]  # SHA-256 of each distinct body: what the inbox must hold afterwards
    orders: list[str]
    duplicates: int = 0
    out_of_order: int = 0  # pushes sent after a later push of the same order
    kinds: dict[str, int] = field(default_factory=dict)


def callback_path(source: str, creds: Credentials) -> str:
    """Our callback URL's path for a source, with its token."""
    return f"/callbacks/{source}?token={creds.callback_token}"


def sign_now(creds: Credentials) -> dict[str, str]:
    """Fresh signature headers; a hex nonce is as good as the family's alphanumeric one and cheaper."""
    timestamp = str(int(time.time() * 1000))
    nonce = secrets.token_hex(16)
    return {
        "access-key": creds.access_key,
        "timestamp": timestamp,
        "nonce-str": nonce,
        "user-id": creds.user_id,
        "signature": spec.sign(creds.access_key, timestamp, nonce, creds.access_secret),
    }


def load_pushes(source: str, creds: Credentials, count: int, signed: bool, seed: int) -> Iterable[Push]:
    """`count` distinct 1688 price pushes for orders nobody holds: the throughput test's load.

    They announce orders no provider has because no worker runs during that test: what is measured is
    the web path alone, as it is for the ceiling.
    """
    path = callback_path(source, creds)
    base_ms = int(time.time() * 1000)
    for i in range(count):
        order_id = f"{seed % 9 + 1}{i:018d}"
        body = {"orderId": order_id, "orderNo": f"PO{i:018d}", "orderStatus": 1, "totalAmount": 23100 + i % 100,
                "shippingFee": 700, "productAmount": 22500, "refundAmount": 0}
        envelope = {"messageType": PRICE_1688, "messageBody": json.dumps(body), "messagePlatform": 1,
                    "timestamp": str(base_ms + i)}
        headers = {"Content-Type": "application/json", **(sign_now(creds) if signed else {})}
        yield Push(path, headers, json.dumps(envelope).encode())


def burst(
    provider: XportcnProvider, source: str, creds: Credentials, orders: int, per_order: int,
    duplicates: int, window: int, rng: random.Random,
) -> Burst:
    """Change `orders` new orders at the provider and build their pushes, `per_order` each.

    Of each order's pushes, `duplicates` are redeliveries of an earlier one (same body and
    headers, as the provider's retry sends them). An order's pushes are sent close together, as a
    provider emits them, but some arrive late (see below).
    """
    path = callback_path(source, creds)
    ids = provider.add_orders(orders, platform="1688")
    changes = (provider.correct_price, provider.step_status, provider.refund)
    clock = int(time.time() * 1000)  # message timestamps: distinct per push, as the provider's are
    sequence: list[tuple[str, int, Push]] = []  # (order, position within the order, push)
    kinds: dict[str, int] = {}
    for order_id in ids:
        originals: list[Push] = []
        for _ in range(per_order - duplicates):
            message_type = rng.choice(changes)(order_id)
            clock += 1
            headers, body = provider.push(order_id, message_type, signed=True, at_ms=clock)
            originals.append(Push(path, headers, body))
            kinds[message_type] = kinds.get(message_type, 0) + 1
        again = [rng.choice(originals) for _ in range(duplicates)]
        pushes = originals + [Push(path, *provider.redeliver(p.headers, p.body)) for p in again]
        sequence += [(order_id, n, p) for n, p in enumerate(pushes)]
    # A fifth of the pushes arrive late, by up to `window` places: out of order within their order,
    # interleaved with the next few orders'.
    keys = [i + (rng.uniform(0, window) if rng.random() < 0.2 else 0) for i in range(len(sequence))]
    shuffled = [item for _, item in sorted(zip(keys, sequence, strict=True), key=lambda pair: pair[0])]
    last_seen: dict[str, int] = {}
    out_of_order = 0
    for order_id, n, _ in shuffled:
        out_of_order += n < last_seen.get(order_id, -1)
        last_seen[order_id] = max(n, last_seen.get(order_id, -1))
    return Burst(
        pushes=[p for _, _, p in shuffled],
        distinct_bodies={hashlib.sha256(p.body).hexdigest() for _, _, p in sequence},
        orders=ids,
        duplicates=orders * duplicates,
        out_of_order=out_of_order,
        kinds=kinds,
    )


def write(path: Path, pushes: Iterable[Push]) -> int:
    """Write pushes in bench/push.lua's line format; return how many."""
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for p in pushes:
            body = p.body.decode()
            if "\t" in body or "\n" in body:
                raise ValueError("a push body with a tab or newline cannot go in a request file")
            headers = "\t".join(f"{k}: {v}" for k, v in p.headers.items())
            fh.write(f"{p.path}\t{headers}\t{body}\n")
            n += 1
    return n
