"""The read API: Bearer token, orders by any id, the inbox newest first."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from receiver.orders import apply_snapshot
from receiver.providers import LineSnapshot, OrderSnapshot
from tests.conftest import API_TOKEN, TOKENS

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def snapshot(**overrides) -> OrderSnapshot:  # type: ignore[no-untyped-def]
    fields = dict(
        platform="taobao", provider_order_id="200058578338", order_no="1192794693444829414",
        purchase_id="200058578338", status="awaiting_payment", raw_status="5", product_amount=2990,
        shipping_fee=0, discount=0, total_amount=2990, refund_amount=0, currency="CNY", modified_at=None,
        lines=(LineSnapshot("L1", "item", "sku", "socks", 1, 2990, 2990, 0, "WAIT_BUYER_P"),),
    )
    return OrderSnapshot(**{**fields, **overrides})


def store(app, *snaps: OrderSnapshot) -> None:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session.begin() as session:
        for i, snap in enumerate(snaps):
            apply_snapshot(session, "demo", snap, datetime.now(timezone.utc), f"test:{i}")


@pytest.mark.parametrize("path", ["/api/orders/demo/1", "/api/events"])
@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer wrong-token-0123456789", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x"]
)
def test_refuses_without_the_right_token(client, path, header):
    resp = client.get(path, headers={"Authorization": header} if header else {})
    assert resp.status_code == 401 and resp.json == {"error": "missing or wrong token"}


@pytest.mark.parametrize("any_id", ["200058578338", "1192794693444829414"])
def test_order_by_any_id_with_history_oldest_first(app, client, any_id):
    store(app, snapshot(), snapshot(total_amount=2890, discount=100))
    order = client.get(f"/api/orders/demo/{any_id}", headers=AUTH).json
    assert order["provider_order_id"] == "200058578338" and order["platform"] == "taobao"
    assert (order["status"], order["raw_status"]) == ("awaiting_payment", "5")
    assert {k: order[k] for k in ("product_amount", "shipping_fee", "discount", "total_amount", "refund_amount")} == {
        "product_amount": 2990, "shipping_fee": 0, "discount": 100, "total_amount": 2890, "refund_amount": 0
    }
    assert order["lines"][0]["title"] == "socks"
    totals = [(h["old"], h["new"], h["cause"]) for h in order["history"] if h["field"] == "total_amount"]
    assert totals == [(None, "2990", "test:0"), ("2990", "2890", "test:1")]
    assert set(order["history"][0]) == {"field", "old", "new", "at", "cause"}


def test_unknown_order_is_404(client):
    assert client.get("/api/orders/demo/nope", headers=AUTH).status_code == 404


def test_stale_snapshot_never_moves_an_order_back(app, client):
    with app.extensions["receiver"].Session.begin() as session:
        later = datetime.now(timezone.utc)
        apply_snapshot(session, "demo", snapshot(status="shipped", raw_status="11"), later, "new")
    with app.extensions["receiver"].Session.begin() as session:
        earlier = datetime(2020, 1, 1, tzinfo=timezone.utc)
        assert apply_snapshot(session, "demo", snapshot(), earlier, "old") == []
    assert client.get("/api/orders/demo/200058578338", headers=AUTH).json["status"] == "shipped"


def test_events_newest_first_filtered_and_paginated(app, client):
    for i, msg in enumerate(["ORDER_CREATE", "ORDER_CANCEL", "SHOP_NOTICE"]):
        body = {"messageType": msg, "messageBody": {"orderId": f"{i}00"} if i < 2 else {"notice": "hi"}, "messagePlatform": 1, "timestamp": str(int(time.time() * 1000) + i)}
        assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", data=json.dumps(body), content_type="application/json").status_code == 200
    page = client.get("/api/events?per_page=2", headers=AUTH).json
    assert page["total"] == 3 and [e["message_type"] for e in page["events"]] == ["SHOP_NOTICE", "ORDER_CANCEL"]
    assert [e["message_type"] for e in client.get("/api/events?per_page=2&page=2", headers=AUTH).json["events"]] == ["ORDER_CREATE"]
    ignored = client.get("/api/events?status=ignored&source=demo", headers=AUTH).json
    assert [e["message_type"] for e in ignored["events"]] == ["SHOP_NOTICE"]
    assert client.get("/api/events?source=thai", headers=AUTH).json["total"] == 0


@pytest.mark.parametrize("query", ["status=lost", "page=0", "per_page=1000", "page=x"])
def test_bad_event_query_is_400(client, query):
    resp = client.get(f"/api/events?{query}", headers=AUTH)
    assert resp.status_code == 400 and resp.json["error"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"ok": True}
    assert client.get("/readyz").json == {"ok": True, "database": True, "redis": True}


@pytest.mark.parametrize(("method", "path", "status"), [("get", "/nowhere", 404), ("get", "/callbacks/demo", 405), ("post", "/callbacks/", 404)])
def test_unrouted_requests_get_json_errors(client, method, path, status):
    resp = getattr(client, method)(path)
    assert resp.status_code == status and resp.is_json and resp.json["ok"] is False


def test_a_call_that_lacks_an_id_or_a_time_leaves_ours_as_it_is(app, client):
    modified = datetime(2026, 5, 20, 7, 41, tzinfo=timezone.utc)
    store(app, snapshot(modified_at=modified), snapshot(order_no=None, purchase_id=None, modified_at=None, total_amount=2890))
    order = client.get("/api/orders/demo/1192794693444829414", headers=AUTH).json
    assert (order["order_no"], order["purchase_id"], order["total_amount"]) == ("1192794693444829414", "200058578338", 2890)
    assert order["modified_at"] == modified.isoformat()
    assert [h["field"] for h in order["history"] if h["old"] is not None] == ["total_amount"]
