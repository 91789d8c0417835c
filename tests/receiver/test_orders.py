"""Applying a re-fetched order: what changed is recorded, nothing moves backwards (an in-memory database)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Iterator

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
