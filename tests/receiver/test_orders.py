"""Applying a re-fetched order: what changed is recorded, nothing moves backwards (an in-memory database)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from receiver.models import Base, Order
from receiver.orders import apply_snapshot, is_stale
from receiver.providers import LineSnapshot, OrderSnapshot

pytestmark = pytest.mark.unit  # fast: no Redis, no worker, no server

T0 = datetime(2026, 5, 20, 7, 40, tzinfo=timezone.utc)
LINE = LineSnapshot("2542285634920880794", "736985424157", "5739035294244", "工装短裤", 3, 7533, 22599, 0, "waitbuyerpay")
SNAP = OrderSnapshot(
    platform="1688", provider_order_id="2542285634920880794", order_no="1232742280398373686", purchase_id=None,
    status="awaiting_payment", raw_status="waitbuyerpay", product_amount=22599, shipping_fee=745, discount=0,
    total_amount=23344, refund_amount=0, currency="CNY", modified_at=None, lines=(LINE,),
)


@pytest.fixture
def session() -> Iterator[Session]:
    """A session on a fresh in-memory database."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def apply(session: Session, snap: OrderSnapshot, at: datetime, cause: str = "event:1") -> list[str]:
    changes = apply_snapshot(session, "demo", snap, at, cause)
    session.flush()
    return [c.field for c in changes]


def test_a_line_refund_is_recorded_in_history(session: Session) -> None:
    apply(session, SNAP, T0)
    refunded = dataclasses.replace(SNAP, refund_amount=515, lines=(dataclasses.replace(LINE, refund_amount=515),))
    fields = apply(session, refunded, T0 + timedelta(seconds=1), "event:2")
    assert fields == ["refund_amount", f"line:{LINE.line_id}.refund_amount"]
    order = session.query(Order).one()
    line_changes = [(c.old, c.new, c.cause) for c in order.changes if c.field == f"line:{LINE.line_id}.refund_amount"]
    assert line_changes == [("0", "515", "event:2")] and order.version == 2


def test_nothing_changed_records_nothing(session: Session) -> None:
    apply(session, SNAP, T0)
    assert apply(session, SNAP, T0 + timedelta(seconds=1)) == []
    assert session.query(Order).one().version == 1


@pytest.mark.parametrize(
    ("held", "new", "started", "stale"),
    [
        ({"status": "shipped"}, {"status": "awaiting_shipment"}, 1, True),  # lower rank, no modified times
        ({"status": "awaiting_shipment"}, {"status": "shipped"}, 1, False),
        ({"status": "shipped"}, {"status": "awaiting_shipment"}, -1, True),  # started before the last fetch
        ({"status": "shipped", "modified_at": T0}, {"status": "awaiting_shipment", "modified_at": T0 + timedelta(seconds=1)}, 1, False),
        ({"status": "awaiting_shipment", "modified_at": T0}, {"status": "shipped", "modified_at": T0 - timedelta(seconds=1)}, 1, True),
        ({"status": "cancelled"}, {"status": "other"}, 1, False),  # "other" has no rank
    ],
)
def test_is_stale(session: Session, held: dict, new: dict, started: int, stale: bool) -> None:
    apply(session, dataclasses.replace(SNAP, **held), T0)
    order = session.query(Order).one()
    assert is_stale(order, dataclasses.replace(SNAP, **new), T0 + timedelta(seconds=started)) is stale


def test_a_stale_snapshot_changes_nothing(session: Session) -> None:
    apply(session, dataclasses.replace(SNAP, status="shipped"), T0)
    assert apply(session, dataclasses.replace(SNAP, status="awaiting_shipment", total_amount=1), T0 - timedelta(seconds=1)) == []
    assert session.query(Order).one().total_amount == 23344


def test_a_first_fetch_stores_every_field_and_records_it(session: Session) -> None:
    fields = apply(session, dataclasses.replace(SNAP, modified_at=T0, purchase_id="200058578338"), T0, "event:1")
    assert fields[:3] == ["order_no", "purchase_id", "status"] and fields[-1] == f"line:{LINE.line_id}"
    order = session.query(Order).one()
    assert (order.source, order.platform, order.provider_order_id, order.version, order.fetched_at) == ("demo", "1688", SNAP.provider_order_id, 1, T0)
    history = {c.field: (c.old, c.new, c.cause) for c in order.changes}
    assert history["total_amount"] == (None, "23344", "event:1")
    assert history["modified_at"] == (None, T0.isoformat(), "event:1")
    assert history[f"line:{LINE.line_id}"] == (None, "added", "event:1")
    [line] = order.lines
    assert (line.line_id, line.product_id, line.sku_id, line.title, line.quantity, line.price, line.amount, line.refund_amount, line.raw_status) == (
        LINE.line_id, "736985424157", "5739035294244", "工装短裤", 3, 7533, 22599, 0, "waitbuyerpay")


def test_a_call_that_lacks_an_id_or_a_time_leaves_ours(session: Session) -> None:
    apply(session, dataclasses.replace(SNAP, modified_at=T0, purchase_id="P1"), T0)
    fields = apply(session, dataclasses.replace(SNAP, order_no=None, purchase_id=None, modified_at=None, status="awaiting_shipment"),
                   T0 + timedelta(seconds=1))
    assert fields == ["status"]
    order = session.query(Order).one()
    assert (order.order_no, order.purchase_id, order.modified_at, order.status) == ("1232742280398373686", "P1", T0, "awaiting_shipment")


def test_a_field_cleared_by_the_provider_is_cleared(session: Session) -> None:
    apply(session, SNAP, T0)
    assert apply(session, dataclasses.replace(SNAP, raw_status="", currency="USD"), T0 + timedelta(seconds=1)) == ["raw_status", "currency"]


def test_line_changes_are_recorded_field_by_field_and_descriptions_silently(session: Session) -> None:
    second = LineSnapshot("2542285634920880795", "736985424158", None, "挂卡", 5, 29, 145, 0, "waitbuyerpay")
    apply(session, dataclasses.replace(SNAP, lines=(LINE, second)), T0)
    changed = dataclasses.replace(LINE, quantity=2, price=7500, amount=15000, raw_status="waitsellersend", title="工装短裤 L", sku_id="57390", product_id="7")
    fields = apply(session, dataclasses.replace(SNAP, lines=(changed,)), T0 + timedelta(seconds=1), "event:2")
    lid = LINE.line_id
    assert fields == [f"line:{lid}.quantity", f"line:{lid}.price", f"line:{lid}.amount", f"line:{lid}.raw_status", f"line:{second.line_id}"]
    order = session.query(Order).one()
    history = {c.field: (c.old, c.new) for c in order.changes if c.cause == "event:2"}
    assert history == {f"line:{lid}.quantity": ("3", "2"), f"line:{lid}.price": ("7533", "7500"), f"line:{lid}.amount": ("22599", "15000"),
                       f"line:{lid}.raw_status": ("waitbuyerpay", "waitsellersend"), f"line:{second.line_id}": ("present", None)}
    [line] = order.lines
    assert (line.title, line.sku_id, line.product_id, line.quantity) == ("工装短裤 L", "57390", "7", 2)
    assert order.version == 2


def test_an_older_fetch_applied_later_never_moves_fetched_at_back(session: Session) -> None:
    apply(session, dataclasses.replace(SNAP, modified_at=T0), T0 + timedelta(seconds=10))
    fields = apply(session, dataclasses.replace(SNAP, modified_at=T0 + timedelta(seconds=1), total_amount=23189), T0 + timedelta(seconds=5))
    assert fields == ["total_amount", "modified_at"]
    assert session.query(Order).one().fetched_at == T0 + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("held", "new", "started", "stale"),
    [
        ({"modified_at": T0}, {"modified_at": T0}, -5, False),  # the same modified time is no step back
        ({"status": "shipped"}, {"status": "shipped"}, 0, False),  # started when the last one did, same rank
        ({"status": "completed"}, {"status": "cancelled"}, 1, False),
        ({"status": "closed"}, {"status": "cancelled"}, 1, False),  # equal rank
        ({"status": "other"}, {"status": "awaiting_payment"}, 1, False),
        ({"status": "received"}, {"status": "awaiting_payment"}, 1, True),
        ({"modified_at": T0}, {"modified_at": None, "status": "shipped"}, -1, True),  # no time on one side: the fetch start decides
    ],
)
def test_is_stale_at_its_edges(session: Session, held: dict, new: dict, started: int, stale: bool) -> None:
    apply(session, dataclasses.replace(SNAP, **held), T0)
    order = session.query(Order).one()
    assert is_stale(order, dataclasses.replace(SNAP, **new), T0 + timedelta(seconds=started)) is stale


def test_find_order_by_any_id_prefers_the_provider_id(session: Session) -> None:
    from receiver.orders import find_order

    apply(session, dataclasses.replace(SNAP, purchase_id="P-7"), T0)
    apply(session, dataclasses.replace(SNAP, provider_order_id="1232742280398373686", order_no="X", lines=()), T0)
    session.commit()
    assert find_order(session, "demo", "1232742280398373686").provider_order_id == "1232742280398373686"  # type: ignore[union-attr]
    assert find_order(session, "demo", "P-7").provider_order_id == SNAP.provider_order_id  # type: ignore[union-attr]
    assert find_order(session, "demo", "X").provider_order_id == "1232742280398373686"  # type: ignore[union-attr]
    assert find_order(session, "thai", SNAP.provider_order_id) is None


def test_order_json_shows_the_order_its_lines_and_history(session: Session) -> None:
    from receiver.orders import order_json

    apply(session, dataclasses.replace(SNAP, modified_at=T0), T0, "event:1")
    shown = order_json(session.query(Order).one())
    assert {k: shown[k] for k in ("source", "platform", "provider_order_id", "order_no", "purchase_id", "status", "raw_status", "product_amount",
                                 "shipping_fee", "discount", "total_amount", "refund_amount", "currency", "modified_at", "fetched_at",
                                 "version")} == {
        "source": "demo", "platform": "1688", "provider_order_id": SNAP.provider_order_id, "order_no": "1232742280398373686",
        "purchase_id": None, "status": "awaiting_payment", "raw_status": "waitbuyerpay", "product_amount": 22599, "shipping_fee": 745,
        "discount": 0, "total_amount": 23344, "refund_amount": 0, "currency": "CNY", "modified_at": T0.isoformat(),
        "fetched_at": T0.isoformat(), "version": 1}
    assert shown["lines"] == [{"line_id": LINE.line_id, "product_id": "736985424157", "sku_id": "5739035294244", "title": "工装短裤",
                               "quantity": 3, "price": 7533, "amount": 22599, "refund_amount": 0, "raw_status": "waitbuyerpay"}]
    assert shown["history"][0] == {"field": "order_no", "old": None, "new": "1232742280398373686", "at": shown["history"][0]["at"], "cause": "event:1"}
    assert len(shown["history"]) == 11  # every field but purchase_id (none), and the line


def test_the_same_provider_order_id_in_two_sources_is_two_orders(session: Session) -> None:
    apply_snapshot(session, "demo", SNAP, T0, "event:1")
    session.flush()
    assert [c.field for c in apply_snapshot(session, "thai", dataclasses.replace(SNAP, total_amount=23189), T0, "event:2")][:1] == ["order_no"]
    session.flush()
    assert sorted((o.source, o.total_amount) for o in session.query(Order)) == [("demo", 23344), ("thai", 23189)]


def test_find_order_by_a_shared_order_no_gives_the_first_stored(session: Session) -> None:
    from receiver.orders import find_order

    for pid in ("200058578338", "200058578339"):  # one Taobao order no, two purchases
        apply(session, dataclasses.replace(SNAP, platform="taobao", provider_order_id=pid, order_no="1192794693444829414", lines=()), T0)
    session.commit()
    assert find_order(session, "demo", "1192794693444829414").provider_order_id == "200058578338"  # type: ignore[union-attr]


def test_order_json_of_an_order_without_a_modified_time(session: Session) -> None:
    from receiver.orders import order_json

    apply(session, SNAP, T0)
    assert order_json(session.query(Order).one())["modified_at"] is None
