"""Fixtures of the receiver package's tests."""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable

import pytest

from receiver import stats
from receiver.models import Event

_serial = itertools.count(1)


@pytest.fixture
def stored_event(app) -> Callable[..., int]:  # type: ignore[no-untyped-def]
    """Insert an inbox event directly (no push, no queue) and return its id."""

    def store(source: str = "demo", status: str = "received", order_id: str | None = None, **fields: object) -> int:
        # A well-formed Xportcn push of a type we do not act on: a replay of it ends `ignored`, not dead.
        envelope = {"messageType": "TEST_NOOP", "messageBody": {"n": next(_serial)}, "messagePlatform": 1, "timestamp": "1"}
        body = fields.pop("body", json.dumps(envelope).encode())
        digest = hashlib.sha256(body).hexdigest()  # type: ignore[arg-type]
        values = {"message_type": "TEST", "kind": "status", "content_type": "application/json", "headers": "{}", **fields}
        event = Event(source=source, status=status, order_id=order_id, dedupe_key=digest, body=body, **values)
        with app.extensions["receiver"].Session.begin() as session:
            session.add(event)
            session.flush()
            return event.id

    return store


@pytest.fixture
def quiet_charts(app) -> None:  # type: ignore[no-untyped-def]
    """Chart counts free of earlier tests', whose tallies (web and worker) flush up to a second late."""
    time.sleep(stats.LINGER + 0.5)
    svc = app.extensions["receiver"]
    left = list(svc.redis.scan_iter(svc.key("stats", "*")))
    if left:
        svc.redis.delete(*left)
