"""The inbox on its own: storing a push once, nonces spent once, counts and purges (a SQLite file)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from receiver import inbox
from receiver.errors import ReplayedNonce
from receiver.models import Event, EventStatus, SpentNonce, utcnow
from receiver.providers import OrderRef, Push, RawPush

pytestmark = pytest.mark.unit

ORDER = "2542285634920880794"
AT = datetime(2026, 5, 20, 7, 47, 49, tzinfo=timezone.utc)
HEADERS = {"access-key": "ak-demo", "timestamp": "1779263269913", "nonce-str": "Nq7Rk2Zp0xW4mV9sT1bC6dF8gH3jL5aE", "signature": "B566",
           "user-id": "2100007341207", "content-type": "application/json", "content-length": "211", "user-agent": "okhttp/4.9",
           "cookie": "session=secret", "x-forwarded-for": "10.0.0.1"}
BODY = b'{"messageType": "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "messageBody": {"orderId": "2542285634920880794"}}'
RAW = RawPush(headers=HEADERS, body=BODY, content_type="application/json; charset=UTF-8")


def push(key: str = "dedupe-1", order: OrderRef | None = OrderRef("1688", ORDER), ignored: str | None = None) -> Push:
    return Push("ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", key, order, ignored)


def events(svc: Any) -> list[Event]:
    with svc.Session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def nonces(svc: Any) -> list[tuple[str, str]]:
    with svc.Session() as session:
        return [(n.source, n.nonce) for n in session.scalars(select(SpentNonce).order_by(SpentNonce.nonce))]


# --- store_push --------------------------------------------------------------------------------
def test_a_push_is_stored_raw_with_what_it_names(unit_services: Any) -> None:
    stored = inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1", received_at=AT)
    assert stored == inbox.Stored(event_id=stored.event_id, duplicate=False) and stored.event_id is not None
    [event] = events(unit_services)
    assert (event.id, event.source, event.message_type, event.kind, event.platform, event.order_id) == (
        stored.event_id, "demo", "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", "1688", ORDER)
    assert (event.dedupe_key, event.nonce, event.body, event.content_type) == ("dedupe-1", "SIG1", BODY, "application/json; charset=UTF-8")
    assert json.loads(event.headers) == {k: HEADERS[k] for k in ("access-key", "content-length", "content-type", "nonce-str",
                                                                  "signature", "timestamp", "user-agent", "user-id")}
    assert list(json.loads(event.headers)) == sorted(json.loads(event.headers))
    assert (event.status, event.ignored_reason, event.attempts, event.received_at, event.updated_at) == (
        EventStatus.RECEIVED, None, 0, AT, AT)
    assert inbox.raw_push(event) == RawPush(json.loads(event.headers), BODY, "application/json; charset=UTF-8")
    assert inbox.event_headers(event)["nonce-str"] == HEADERS["nonce-str"]


def test_a_push_that_names_no_order_is_stored_ignored_with_its_reason(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RAW, push(order=None, ignored="the summary body names no order id"))
    inbox.store_push(unit_services.engine, "demo", RAW, push("dedupe-2", order=None))
    inbox.store_push(unit_services.engine, "demo", RAW, push("dedupe-3", ignored="r" * 300))
    got = [(e.status, e.platform, e.order_id, e.ignored_reason) for e in events(unit_services)]
    assert got == [(EventStatus.IGNORED, None, None, "the summary body names no order id"),
                   (EventStatus.IGNORED, None, None, "names no order"),
                   (EventStatus.IGNORED, "1688", ORDER, "r" * 255)]


def test_a_long_content_type_is_cut_to_its_column(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RawPush({}, BODY, "application/json; " + "x" * 200), push())
    assert events(unit_services)[0].content_type == ("application/json; " + "x" * 200)[:128]


def test_the_time_received_defaults_to_now(unit_services: Any) -> None:
    before = utcnow()
    inbox.store_push(unit_services.engine, "demo", RAW, push())
    [event] = events(unit_services)
    assert before <= event.received_at <= utcnow() and event.updated_at == event.received_at


def test_the_same_push_again_is_a_duplicate(unit_services: Any) -> None:
    first = inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1")
    again = inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1")  # our 200 was lost: sent again
    assert again == inbox.Stored(event_id=None, duplicate=True) and first.event_id is not None
    assert len(events(unit_services)) == 1 and nonces(unit_services) == []


def test_an_unsigned_duplicate_is_a_duplicate_too(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RAW, push())
    assert inbox.store_push(unit_services.engine, "demo", RAW, push()).duplicate
    assert nonces(unit_services) == []


def test_a_redelivery_with_a_new_nonce_spends_it(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1")
    assert inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG2").duplicate
    assert nonces(unit_services) == [("demo", "SIG2")]
    with pytest.raises(ReplayedNonce):  # SIG2 again, on another message
        inbox.store_push(unit_services.engine, "demo", RAW, push("dedupe-9"), nonce="SIG2")


def test_a_nonce_held_by_another_event_is_a_replay(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1")
    with pytest.raises(ReplayedNonce) as err:
        inbox.store_push(unit_services.engine, "demo", RAW, push("dedupe-2"), nonce="SIG1")
    assert err.value.message == "nonce seen before"
    assert len(events(unit_services)) == 1


def test_nonces_are_per_source(unit_services: Any) -> None:
    inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG1")
    assert inbox.store_push(unit_services.engine, "thai", RAW, push("dedupe-2"), nonce="SIG1").event_id is not None
    inbox.spend_nonce(unit_services.engine, "xport", "SIG1")
    assert nonces(unit_services) == [("xport", "SIG1")]


def test_a_spent_nonce_is_spent_once(unit_services: Any) -> None:
    inbox.spend_nonce(unit_services.engine, "demo", "SIG7")
    with pytest.raises(ReplayedNonce) as err:
        inbox.spend_nonce(unit_services.engine, "demo", "SIG7")
    assert err.value.message == "nonce seen before"
    with pytest.raises(ReplayedNonce):  # nor can a push bring it
        inbox.store_push(unit_services.engine, "demo", RAW, push(), nonce="SIG7")
    assert events(unit_services) == []


def test_forget_nonces_keeps_twice_the_window(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    monkeypatch.setattr(inbox, "utcnow", lambda: now)
    for nonce, age in (("old", 7201), ("edge", 7200), ("new", 10)):
        with unit_services.engine.begin() as conn:
            conn.execute(SpentNonce.__table__.insert().values(source="demo", nonce=nonce, seen_at=now - timedelta(seconds=age)))
    assert inbox.forget_nonces(unit_services.engine, 3600) == 1
    assert nonces(unit_services) == [("demo", "edge"), ("demo", "new")]


# --- statuses, counts, purges ------------------------------------------------------------------
_keys = iter(range(10**6))


def store_many(svc: Any, *specs: tuple[str, str, str | None]) -> list[int]:
    ids = []
    for source, kind, status in specs:
        p = Push("T", kind, f"k{next(_keys)}", OrderRef("1688", ORDER) if status != EventStatus.IGNORED else None, None)
        ids.append(inbox.store_push(svc.engine, source, RAW, p).event_id)
    return ids


def test_mark_queued_moves_only_waiting_events(unit_services: Any) -> None:
    ids = store_many(unit_services, ("demo", "price", None), ("demo", "price", EventStatus.IGNORED), ("demo", "price", None))
    with unit_services.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id == ids[2]).values(status=EventStatus.DEAD))
    other = store_many(unit_services, ("demo", "price", None))[0]
    old = utcnow() - timedelta(minutes=5)
    with unit_services.engine.begin() as conn:
        conn.execute(update(Event).values(updated_at=old))
    inbox.mark_queued(unit_services.engine, ids)
    got = {e.id: (e.status, e.updated_at > old) for e in events(unit_services)}
    assert got == {ids[0]: (EventStatus.QUEUED, True), ids[1]: (EventStatus.IGNORED, False), ids[2]: (EventStatus.DEAD, False),
                   other: (EventStatus.RECEIVED, False)}


def test_counts_by_source_status_kind_and_platform(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "_counts", {})
    store_many(unit_services, ("demo", "price", None), ("demo", "price", None), ("demo", "refund", EventStatus.IGNORED),
               ("thai", "status", None), ("thai", "refund", None))
    counts = inbox.inbox_counts(unit_services.read_engine, 0)
    assert counts == {("demo", "received", "price", "1688"): 2, ("demo", "ignored", "refund", None): 1,
                      ("thai", "received", "status", "1688"): 1, ("thai", "received", "refund", "1688"): 1}
    assert inbox.status_counts(unit_services.read_engine, 0) == {("demo", "received"): 2, ("demo", "ignored"): 1, ("thai", "received"): 2}


def test_counts_may_be_as_old_as_the_ttl(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "_counts", {})
    clock = [1000.0]
    monkeypatch.setattr(inbox, "time", SimpleNamespace(time=lambda: clock[0]))
    store_many(unit_services, ("demo", "price", None))
    assert sum(inbox.inbox_counts(unit_services.read_engine, 5).values()) == 1
    store_many(unit_services, ("thai", "price", None))
    clock[0] += 4.9
    assert sum(inbox.inbox_counts(unit_services.read_engine, 5).values()) == 1  # cached
    clock[0] += 0.1
    assert sum(inbox.inbox_counts(unit_services.read_engine, 5).values()) == 2


def test_purge_deletes_old_events_in_the_statuses_asked(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = store_many(unit_services, ("demo", "price", None), ("demo", "price", None), ("thai", "price", None), ("demo", "price", None))
    old, now = utcnow() - timedelta(days=31), utcnow()
    with unit_services.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id.in_(ids[:3])).values(status=EventStatus.PROCESSED, updated_at=old))
        conn.execute(update(Event).where(Event.id == ids[3]).values(status=EventStatus.DEAD, updated_at=old))
    before = now - timedelta(days=30)
    assert inbox.purge_events(unit_services.engine, (EventStatus.PROCESSED,), before, source="thai") == 1
    assert inbox.purge_events(unit_services.engine, (EventStatus.PROCESSED, EventStatus.IGNORED), before) == 2
    assert [e.id for e in events(unit_services)] == [ids[3]]
    assert inbox.purge_events(unit_services.engine, (EventStatus.DEAD,), old - timedelta(seconds=1)) == 0
    assert inbox.purge_events(unit_services.engine, (EventStatus.DEAD,), old) == 0  # untouched since exactly then: kept


def test_purge_goes_a_batch_at_a_time(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "PURGE_BATCH", 2)
    pauses: list[float] = []
    monkeypatch.setattr(inbox, "time", SimpleNamespace(monotonic=time.monotonic, sleep=pauses.append))
    ids = store_many(unit_services, *[("demo", "price", None)] * 5)
    with unit_services.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id.in_(ids)).values(status=EventStatus.PROCESSED, updated_at=utcnow() - timedelta(days=40)))
    assert inbox.purge_events(unit_services.engine, (EventStatus.PROCESSED,), utcnow()) == 5
    assert pauses == [inbox.PURGE_PAUSE, inbox.PURGE_PAUSE]


def test_purge_stops_at_its_budget(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "time", SimpleNamespace(monotonic=lambda: 1000.0, sleep=time.sleep))  # no time passes
    ids = store_many(unit_services, ("demo", "price", None))
    with unit_services.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id.in_(ids)).values(status=EventStatus.PROCESSED, updated_at=utcnow() - timedelta(days=40)))
    assert inbox.purge_events(unit_services.engine, (EventStatus.PROCESSED,), utcnow(), budget=0) == 0
    assert len(events(unit_services)) == 1
