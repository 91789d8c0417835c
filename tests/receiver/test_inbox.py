"""The inbox's own INSERT, run on the driver: what it stores reads back as SQLAlchemy wrote it."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from receiver.inbox import store_push
from receiver.models import Event
from receiver.providers import OrderRef, Push, RawPush


def test_a_stored_push_is_found_by_its_exact_receipt_time(app):
    engine = app.extensions["receiver"].engine
    received = datetime(2026, 11, 27, 8, 0, 0, 5, tzinfo=timezone.utc)
    raw = RawPush(headers={"content-type": "application/json"}, body=b'{"a": 1}', content_type="application/json")
    push = Push("ORDER_CANCEL", "status", "k" * 64, OrderRef("1688", "2542285634920880794"))
    stored = store_push(engine, "demo", raw, push, nonce="n" * 32, received_at=received)
    with app.extensions["receiver"].Session() as session:
        event = session.scalars(select(Event).where(Event.received_at == received)).one()
    assert (event.id, event.received_at, event.nonce, event.body) == (stored.event_id, received, "n" * 32, b'{"a": 1}')
