"""Months in production: old events go, dead ones stay; open orders with no news are re-fetched."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from receiver import inbox
from receiver.models import Event, Order, OrderChange, utcnow
from tests.workers.test_refetch import ALIBABA, TAOBAO, order_when, send
from workers import tasks
from workers.cli import main


def add_events(app, *rows: tuple[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Inbox rows (status, age in days), as old as they say."""
    values = []
    for i, (status, days) in enumerate(rows):
        at = utcnow() - timedelta(days=days)
        values.append({"source": "demo", "message_type": "ORDER_CREATE", "kind": "status", "platform": "1688",
                       "order_id": f"{i}", "dedupe_key": f"k{i}-{time.time_ns()}", "nonce": None,
                       "content_type": "application/json", "headers": "{}", "body": b"{}", "status": status,
                       "attempts": 1, "received_at": at, "updated_at": at})
    with app.extensions["receiver"].engine.begin() as conn:
        conn.execute(insert(Event), values)


def left(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return sorted((e.status, e.order_id) for e in session.scalars(select(Event)))


def test_processed_and_ignored_events_past_the_retention_go_dead_ones_stay(app, monkeypatch):
    add_events(app, ("processed", 31), ("ignored", 45), ("dead", 90), ("failed", 40), ("processed", 29), ("ignored", 1))
    add_events(app, *[("processed", 40)] * 5)
    monkeypatch.setattr(inbox, "PURGE_BATCH", 2)  # several small batches
    with app.app_context():
        assert tasks.purge_events() == 7
    assert left(app) == [("dead", "2"), ("failed", "3"), ("ignored", "5"), ("processed", "4")]


def test_a_replayed_event_counts_from_its_replay(app):
    add_events(app, ("processed", 40))
    with app.extensions["receiver"].engine.begin() as conn:
        conn.execute(update(Event).values(updated_at=utcnow()))  # replayed and processed again today
    with app.app_context():
        assert tasks.purge_events() == 0


def test_purge_by_hand_removes_dead_events_before_a_date(app, environ, monkeypatch):
    add_events(app, ("dead", 10), ("dead", 2), ("processed", 10))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["events", "purge", "--status", "dead", "--before", "7d"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 1 dead event(s)")
    assert left(app) == [("dead", "1"), ("processed", "2")]


def test_order_history_survives_the_purge(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    order_when(client, ALIBABA)
    with app.extensions["receiver"].engine.begin() as conn:
        old = utcnow() - timedelta(days=60)
        conn.execute(update(Event).values(received_at=old, updated_at=old))
        before = conn.execute(select(OrderChange.id)).scalars().all()
    with app.app_context():
        assert tasks.purge_events() == 1
    with app.extensions["receiver"].engine.connect() as conn:
        assert conn.execute(select(OrderChange.id)).scalars().all() == before != []


def age_orders(app, hours: float) -> None:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].engine.begin() as conn:
        conn.execute(update(Order).values(fetched_at=utcnow() - timedelta(hours=hours)))


def test_an_open_order_with_no_news_is_refetched(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    send(client, provider, TAOBAO, "ORDER_CREATE")
    order_when(client, ALIBABA)
    order_when(client, TAOBAO)
    provider.correct_price(ALIBABA, -155)  # the push for it is lost
    provider.correct_price(TAOBAO, -155)
    age_orders(app, 7)
    with app.app_context():
        assert tasks.refresh_open_orders("demo") == 2
    order_when(client, ALIBABA, total_amount=provider.order(ALIBABA)["totalAmount"])
    order_when(client, TAOBAO, total_amount=provider.order(TAOBAO)["purchaseAmount"])


def test_recent_and_final_orders_are_left_alone(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, provider.set_status(ALIBABA, 6))  # cancelled: final
    send(client, provider, TAOBAO, "ORDER_CREATE")
    order_when(client, ALIBABA, status="cancelled")
    order_when(client, TAOBAO)
    with app.app_context():
        assert tasks.refresh_open_orders("demo") == 0  # the Taobao order is recent
        age_orders(app, 7)
        assert tasks.refresh_open_orders("demo") == 1  # only the Taobao order is open


def test_beat_purges_and_refreshes(app):
    schedule = app.extensions["celery"].conf.beat_schedule
    assert schedule["purge-events"]["task"] == "workers.tasks.purge_events"
    assert {f"refresh-open-{name}" for name in ("demo", "xport", "thai", "daji")} <= set(schedule)


@pytest.mark.parametrize("since", ["6h", "1d", "7d", "2026-01-01"])
def test_reconcile_takes_relative_windows(environ, monkeypatch, sandbox, since):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["reconcile", "--source", "demo", "--since", since])
    assert result.exit_code == 0, result.output
    start = datetime.strptime(result.output.split(" from ")[1][:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    ago = {"6h": timedelta(hours=6), "1d": timedelta(days=1), "7d": timedelta(days=7)}
    expected = utcnow() - ago[since] if since in ago else datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert abs(start - expected) < timedelta(seconds=30)
    assert "page 1:" in result.output and "done: " in result.output  # the seed orders were created just now


def test_reconcile_refuses_a_window_it_cannot_read(environ, monkeypatch):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["reconcile", "--source", "demo", "--since", "yesterday"])
    assert result.exit_code == 2 and "--since" in result.output


def test_refresh_takes_the_oldest_first_a_limited_number_and_skips_what_it_just_tried(app, client, sandbox, worker, make_app):
    provider = sandbox.providers["xportcn"]
    ids = provider.add_orders(3)
    for order_id in ids:
        send(client, provider, order_id, "ORDER_CREATE")
        order_when(client, order_id)
    with app.extensions["receiver"].engine.begin() as conn:
        for hours, order_id in zip((9, 30, 12), ids, strict=True):
            conn.execute(update(Order).where(Order.provider_order_id == order_id).values(fetched_at=utcnow() - timedelta(hours=hours)))
    svc = app.extensions["receiver"]
    from workers import pipeline

    with app.app_context():
        assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", limit=2)] == [ids[1], ids[2]]
        pipeline.note_refresh(svc, "demo", ids[1])  # its re-fetch failed: it must not hold the others up
        assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", limit=2)] == [ids[2], ids[0]]
