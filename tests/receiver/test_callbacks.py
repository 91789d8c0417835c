"""POST /callbacks/<source>: each refusal with its own status, nothing stored for a refused push."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text

from receiver.inbox import forget_nonces
from receiver.models import Event, EventStatus, SpentNonce, utcnow
from receiver.sandbox.xportcn import md5_signature
from tests.conftest import CREDENTIALS, TOKENS

ORDER = "2542285634920880794"
URL = f"/callbacks/demo?token={TOKENS['demo']}"


def stored_events(app) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def envelope(**overrides):  # type: ignore[no-untyped-def]
    body = {
        "messageType": "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY",
        "messageBody": json.dumps({"orderId": ORDER, "orderNo": "PO1"}),
        "messagePlatform": 1,
        "timestamp": str(int(time.time() * 1000)),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def signed(ts_ms: int | None = None, secret: str | None = None, nonce: str | None = None) -> dict[str, str]:
    """Headers as the provider signs them, by the loopback provider's own code (not our client's)."""
    c = CREDENTIALS["demo"]
    stamp = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    nonce = uuid.uuid4().hex if nonce is None else nonce
    headers = {"access-key": c["access_key"], "timestamp": stamp, "user-id": c["user_id"]}
    headers["signature"] = md5_signature(c["access_key"], stamp, nonce, secret or c["access_secret"])
    return {**headers, "nonce-str": nonce} if nonce else headers


def test_signed_push_is_stored_and_acknowledged(app, client):
    resp = client.post(URL, json=envelope(), headers=signed())
    assert resp.status_code == 200 and resp.json == {"ok": True}
    [event] = stored_events(app)
    assert (event.source, event.kind, event.platform, event.order_id) == ("demo", "price", "1688", ORDER)
    assert json.loads(event.body)["messagePlatform"] == 1
    assert json.loads(event.headers)["access-key"] == CREDENTIALS["demo"]["access_key"]


def test_unsigned_push_with_token_is_accepted(app, client):
    assert client.post(URL, json=envelope()).status_code == 200
    assert len(stored_events(app)) == 1


def test_timestamp_in_seconds_is_accepted(app, client):
    assert client.post(URL, json=envelope(), headers=signed(ts_ms=int(time.time()))).status_code == 200


@pytest.mark.parametrize(
    ("url", "headers", "status", "event"),
    [
        ("/callbacks/nobody?token=x", {}, 404, "unknown source"),
        ("/callbacks/demo", {}, 401, "missing token"),
        ("/callbacks/demo?token=wrong-token-0123456789", {}, 401, "wrong token"),
        (f"/callbacks/demo?token={TOKENS['thai']}", {}, 401, "another source's token"),
        (URL, "bad-secret", 401, "bad signature"),
        (URL, "stale", 401, "stale timestamp"),
        (URL, "future", 401, "timestamp from the future"),
        (URL, "partial", 401, "incomplete signature headers"),
        (URL, "nonce-not-signed", 401, "a nonce the signature does not cover"),
    ],
)
def test_refused_push_stores_nothing(app, client, settings, url, headers, status, event):
    window_ms = settings.timestamp_window * 1000
    if headers == "bad-secret":
        headers = signed(secret="not-the-secret")
    elif headers == "stale":
        headers = signed(ts_ms=int(time.time() * 1000) - window_ms - 1000)
    elif headers == "future":
        headers = signed(ts_ms=int(time.time() * 1000) + window_ms + 1000)
    elif headers == "partial":
        headers = {k: v for k, v in signed().items() if k != "timestamp"}
    elif headers == "nonce-not-signed":
        headers = {**signed(nonce=""), "nonce-str": "added-after-signing"}
    resp = client.post(url, json=envelope(), headers=headers)
    assert resp.status_code == status, event
    assert resp.json["ok"] is False and resp.json["error"]
    assert stored_events(app) == []


def test_replayed_nonce_is_refused(app, client):
    headers = signed()
    assert client.post(URL, json=envelope(), headers=headers).status_code == 200
    replay = client.post(URL, json=envelope(messageType="ORDER_CANCEL"), headers=headers)
    assert replay.status_code == 401 and "nonce" in replay.json["error"]
    assert len(stored_events(app)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (json.dumps(envelope(messageType=None)).encode(), "messageType"),
        (json.dumps(envelope(messageBody=None)).encode(), "messageBody"),
        (json.dumps(envelope(messageBody="{broken")).encode(), "messageBody"),
        (json.dumps(envelope(messageBody="[1]")).encode(), "messageBody"),
        (json.dumps(envelope(messagePlatform=7)).encode(), "messagePlatform"),
        (json.dumps(envelope(messagePlatform="1")).encode(), "messagePlatform"),
        (json.dumps(envelope(timestamp="yesterday")).encode(), "timestamp"),
        (json.dumps(envelope(messageBody=json.dumps({"orderId": "9" * 65}))).encode(), "messageBody.orderId"),
        (json.dumps(envelope(messageBody={"baseInfo": {"idOfStr": "9" * 65}})).encode(), "messageBody.baseInfo.idOfStr"),
        (json.dumps(envelope(messageBody={"salesOrderId": "9" * 65, "subOrders": []})).encode(), "messageBody.salesOrderId"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (json.dumps(envelope(messageBody="[" * 100_000)).encode(), "messageBody"),
    ],
)
def test_malformed_body_is_400_naming_the_field(app, client, body, field):
    resp = client.post(URL, data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json["field"] == field
    assert stored_events(app) == []


def test_message_body_as_object_is_accepted(app, client):
    resp = client.post(URL, json=envelope(messageBody={"orderId": ORDER}))
    assert resp.status_code == 200
    assert stored_events(app)[0].order_id == ORDER


def test_oversize_body_is_413(app, client):
    padding = "x" * (1024 * 1024)
    resp = client.post(URL, json=envelope(messageBody=json.dumps({"orderId": ORDER, "pad": padding})))
    assert resp.status_code == 413
    assert stored_events(app) == []


def test_a_push_naming_no_order_is_stored_as_ignored_with_its_reason(app, client):
    resp = client.post(URL, json=envelope(messageType="SHOP_NOTICE", messageBody=json.dumps({"notice": "hi", "id": "77"})))
    assert resp.status_code == 200
    [event] = stored_events(app)
    assert (event.message_type, event.kind, event.status, event.order_id) == ("SHOP_NOTICE", "other", EventStatus.IGNORED, None)
    assert event.ignored_reason == "the summary body names no order id"


@pytest.mark.parametrize("message_type", ["ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS", "1688_SOMETHING_NEW", "TAOBAO_ORDER_STATUS_MODIFY"])
def test_a_type_never_seen_before_that_names_an_order_is_kept_for_a_refetch(app, client, message_type):
    assert client.post(URL, json=envelope(messageType=message_type)).status_code == 200
    [event] = stored_events(app)
    # A worker left running by an earlier test may already have re-fetched it: anything but ignored.
    assert event.status != EventStatus.IGNORED
    assert (event.order_id, event.ignored_reason) == (ORDER, None)


def test_duplicate_delivery_is_acknowledged_and_stored_once(app, client):
    first = envelope()
    assert client.post(URL, json=first).status_code == 200
    respaced = json.dumps(dict(reversed(first.items())), indent=2)  # the same message, written another way
    assert client.post(URL, data=respaced, content_type="application/json").status_code == 200
    assert len(stored_events(app)) == 1


def test_a_push_with_another_body_under_the_same_type_order_and_time_is_not_dropped(app, client):
    # Today's dedupe key must not let an early, unsigned push pre-empt the genuine one.
    genuine = envelope(timestamp=str(int(time.time() * 1000) + 60_000))
    forged = {**genuine, "messageBody": json.dumps({"orderId": ORDER, "orderStatus": "CANCEL"})}
    assert client.post(URL, json=forged).status_code == 200
    assert client.post(URL, json=genuine, headers=signed()).status_code == 200
    assert len(stored_events(app)) == 2


def test_a_signed_push_without_a_nonce_is_verified(app, client):
    headers = signed(nonce="")
    assert "nonce-str" not in headers
    assert client.post(URL, json=envelope(), headers=headers).status_code == 200
    forged = client.post(URL, json=envelope(messageType="ORDER_CANCEL"), headers=headers)
    assert forged.status_code == 401  # a captured signature does not carry a new body


def test_a_retry_hours_later_with_its_first_headers_is_accepted_or_a_duplicate(app, client):
    signed_at = int(time.time() * 1000) - (2 * 3600 + 30 * 60) * 1000  # the fifth retry, 2.5 hours on
    headers, body = signed(ts_ms=signed_at), envelope(timestamp=str(signed_at))
    assert client.post(URL, json=body, headers=headers).status_code == 200  # we were down until now
    assert client.post(URL, json=body, headers=headers).status_code == 200  # and its next retry
    assert len(stored_events(app)) == 1


def test_a_source_may_require_signed_pushes(settings, make_app):
    demo = dataclasses.replace(settings.sources["demo"], credentials={**settings.sources["demo"].credentials, "require_signature": True})
    client = make_app(sources={**settings.sources, "demo": demo}).test_client()
    refused = client.post(URL, json=envelope())
    assert refused.status_code == 401 and "signature" in refused.json["error"]
    assert client.post(URL, json=envelope(), headers=signed()).status_code == 200


def test_database_down_is_503_so_the_provider_retries(make_app, tmp_path):
    app = make_app(database_url=f"sqlite:///{tmp_path}/missing/dir/receiver.db")
    resp = app.test_client().post(URL, json=envelope())
    assert resp.status_code == 503 and resp.json["ok"] is False


@pytest.mark.parametrize("first", ["redelivery", "malformed"])
def test_a_nonce_spent_without_an_event_is_not_spent_again(app, client, first):
    # The family signs key, timestamp and nonce, not the body: headers seen once must not carry another body.
    original = envelope()
    assert client.post(URL, json=original, headers=signed()).status_code == 200
    headers = signed()
    spent = original if first == "redelivery" else envelope(messageType=None)
    assert client.post(URL, json=spent, headers=headers).status_code == (200 if first == "redelivery" else 400)
    forged = client.post(URL, json=envelope(messageType="ORDER_CANCEL"), headers=headers)
    assert forged.status_code == 401 and "nonce" in forged.json["error"]
    assert [e.message_type for e in stored_events(app)] == [original["messageType"]]


def test_the_same_push_sent_again_after_a_lost_answer_is_a_duplicate(app, client):
    headers, body = signed(), envelope()
    assert client.post(URL, json=body, headers=headers).status_code == 200
    assert client.post(URL, json=body, headers=headers).status_code == 200
    assert len(stored_events(app)) == 1


def test_spent_nonces_are_forgotten_after_twice_the_window(app, settings):
    engine = app.extensions["receiver"].engine
    window = settings.timestamp_window
    old, recent = utcnow() - timedelta(seconds=2 * window + 5), utcnow() - timedelta(seconds=2 * window - 5)
    with engine.begin() as conn:
        conn.execute(insert(SpentNonce), [{"source": "demo", "nonce": "old", "seen_at": old},
                                          {"source": "demo", "nonce": "recent", "seen_at": recent}])
    assert forget_nonces(engine, window) == 1
    with engine.connect() as conn:
        assert conn.execute(select(SpentNonce.nonce)).scalars().all() == ["recent"]


def test_a_push_refused_for_want_of_a_database_keeps_its_nonce_for_the_retry(app, client, make_app, tmp_path):
    headers, body = signed(), envelope()
    broken = make_app(database_url=f"sqlite:///{tmp_path}/missing/dir/receiver.db")
    assert broken.test_client().post(URL, json=body, headers=headers).status_code == 503
    assert client.post(URL, json=body, headers=headers).status_code == 200  # the provider's retry, unchanged
    assert len(stored_events(app)) == 1


def test_redis_down_still_refuses_a_replayed_nonce(app, make_app):
    client = make_app(broker_url="redis://127.0.0.1:1/0").test_client()
    headers = signed()
    assert client.post(URL, json=envelope(), headers=headers).status_code == 200
    replay = client.post(URL, json=envelope(messageType="ORDER_CANCEL"), headers=headers)
    assert replay.status_code == 401 and "nonce" in replay.json["error"]
    assert len(stored_events(app)) == 1


def test_redis_down_still_acknowledges_and_keeps_the_event_received(app, make_app):
    down = make_app(broker_url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    resp = down.test_client().post(URL, json=envelope(), headers=signed())
    assert resp.status_code == 200
    assert time.monotonic() - started < 1.0  # the provider gives up after 1000 ms
    [event] = stored_events(app)
    assert event.status == EventStatus.RECEIVED


def test_allow_list_refuses_other_addresses(settings, make_app):
    demo = dataclasses.replace(settings.sources["demo"], allow_ips=(ipaddress.ip_network("203.0.113.0/24"),))
    client = make_app(sources={**settings.sources, "demo": demo}).test_client()
    assert client.post(URL, json=envelope(), environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 401
    assert client.post(URL, json=envelope(), environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200


@pytest.mark.parametrize("url", ["/callbacks/demo", "/callbacks/demo?token=wrong-token-0123456789"])
def test_a_signed_push_still_needs_the_url_token(app, client, url):
    resp = client.post(url, json=envelope(), headers=signed())
    assert resp.status_code == 401 and "token" in resp.json["error"]
    assert stored_events(app) == []


def test_a_push_on_a_connection_the_server_ended_is_stored_once(app, client, caplog):
    # The inbox's pool does not ping a connection before the INSERT: a lost one is replaced and the
    # INSERT sent again, so the provider still gets its 200 and the inbox holds the push once.
    svc = app.extensions["receiver"]
    if svc.inbox_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to lose a connection to")
    assert client.post(URL, json=envelope(), headers=signed()).status_code == 200  # a pooled connection now
    with svc.engine.connect() as conn:  # as a server restart would: every other backend of the database ends
        ended = conn.execute(text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).scalar_one()
    assert ended >= 1
    body = envelope(messageType="ORDER_BUYER_VIEW_ORDER_STATUS_CHANGE")
    assert client.post(URL, json=body, headers=signed()).status_code == 200
    assert "inbox.connection_lost" in caplog.text
    assert [e.message_type for e in stored_events(app)].count(body["messageType"]) == 1
