"""The inbox's own INSERT, run on the driver: what it stores is what SQLAlchemy would have written."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select, text

from receiver.inbox import event_values, store_push
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


def test_the_driver_insert_writes_what_sqlalchemy_core_writes(app):
    # The inbox compiles its INSERT once and runs it on the driver, with bind processors it takes out
    # of SQLAlchemy's compiled statement: an upgrade that changes either must fail here, not corrupt rows.
    svc = app.extensions["receiver"]
    received = datetime(2026, 11, 27, 8, 0, 0, 5, tzinfo=timezone.utc)
    headers = {"content-type": "application/json", "nonce-str": "工装", "signature": "AB12", "cookie": "no"}
    raw = RawPush(headers=headers, body=b'{"a": "\xe5\xb7\xa5"}', content_type="application/json; charset=UTF-8")
    rows = []
    for n, ignored in enumerate((None, "the summary body names no order id")):
        push = Push("ORDER_CANCEL", "status", f"driver-{n}", OrderRef("1688", "2542285634920880794") if ignored is None else None, ignored)
        by_driver = store_push(svc.engine, "demo", raw, push, nonce=f"n{n}", received_at=received)
        core = event_values("demo", raw, Push(push.message_type, push.kind, f"core-{n}", push.order, ignored), f"c{n}", received)
        with svc.engine.begin() as conn:
            by_core = conn.execute(insert(Event).values(core).returning(Event.id)).scalar_one()
        rows.append((by_driver.event_id, by_core))
    columns = [c for c in Event.__table__.columns.keys() if c not in ("id", "dedupe_key", "nonce")]
    with svc.engine.connect() as conn:
        # Raw rows, not through the models' types: what each path put in the database, byte for byte.
        stored = {row[0]: row[1:] for row in conn.execute(text(f"SELECT id, {', '.join(columns)} FROM events"))}
    for driver_id, core_id in rows:
        assert driver_id is not None and stored[driver_id] == stored[core_id]
    assert {stored[i][columns.index("status")] for i, _ in rows} == {"received", "ignored"}
