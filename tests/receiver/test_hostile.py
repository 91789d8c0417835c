"""Input an attacker would send: each gets a clear refusal, nothing half-stored, no forged log line."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from receiver.models import Event
from tests.conftest import TOKENS

ORDER = "2542285634920880794"
URL = f"/callbacks/demo?token={TOKENS['demo']}"


def stored(app) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return list(session.scalars(select(Event)))


def envelope(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"messageType": "ORDER_CREATE", "messageBody": {"orderId": ORDER}, "messagePlatform": 1,
                               "timestamp": str(int(time.time() * 1000))}
    return {**body, **overrides}


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(("size", "status"), [(1024 * 1024 + 10, 413), (900 * 1024, 200)])
def test_a_chunked_body_over_the_limit_is_a_413_not_a_cut_push(app, live_url, size, status):
    pad = "x" * (size - len(json.dumps(envelope(messageBody={"orderId": ORDER, "pad": ""}))))
    body = json.dumps(envelope(messageBody={"orderId": ORDER, "pad": pad})).encode()
    assert len(body) == size
    resp = requests.post(f"{live_url}{URL}", data=chunks(body), headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == status
    assert [e.body for e in stored(app)] == ([body] if status == 200 else [])


@pytest.mark.parametrize("field", ["messageType", "orderId", "orderNo"])
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\u2028"])
def test_control_characters_in_an_id_or_a_type_are_a_400_naming_the_field(app, client, field, char):
    if field == "messageType":
        body, named = envelope(messageType=f"ORDER{char}CREATE"), "messageType"
    else:
        body, named = envelope(messageBody={"orderId": ORDER, field: f"12{char}34"}), f"messageBody.{field}"
    resp = client.post(URL, json=body)
    assert resp.status_code == 400 and resp.json["field"] == named
    assert stored(app) == []


@pytest.mark.parametrize("char", ["\x00", "\n"])
def test_control_characters_in_a_dajisaas_message_id_are_a_400(app, client, char):
    from urllib.parse import urlencode

    from receiver.sandbox.dajisaas import PUSH_SIGNERS
    from tests.conftest import CREDENTIALS

    text = json.dumps({"msgId": f"77{char}1", "type": "ORDER_BUYER_VIEW_ORDER_PAY", "gmtBorn": 1, "data": {"orderId": 290805933373634}})
    body = urlencode({"message": text, "_dj_signature": PUSH_SIGNERS["name-value-hex-upper"](CREDENTIALS["daji"]["app_secret"], text)})
    resp = client.post(f"/callbacks/daji?token={TOKENS['daji']}", data=body, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and resp.json["field"] == "message.msgId"
    assert stored(app) == []


def test_an_unknown_source_name_cannot_forge_a_log_line(client, caplog):
    caplog.set_level(logging.INFO)
    resp = client.post("/callbacks/evil%0Acallback.accepted%20source=demo?token=x", json=envelope())
    assert resp.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("receiver")]
    assert lines and all("\n" not in line for line in lines)
    assert not any(line.startswith("callback.accepted") for line in lines)


def test_a_long_path_writes_a_short_log_line(client, caplog):
    caplog.set_level(logging.INFO)
    assert client.post("/callbacks/" + "a" * 4000 + "?token=x", json=envelope()).status_code == 404
    assert max(len(r.getMessage()) for r in caplog.records if r.name.startswith("receiver")) < 400


def test_refusals_do_not_wait_on_a_hanging_redis(make_app):
    import socket

    with socket.socket() as hanging:  # accepts connections, never answers: a Redis that hangs
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        app = make_app(broker_url=f"redis://127.0.0.1:{hanging.getsockname()[1]}/0")
        client = app.test_client()
        took = []
        for _ in range(5):
            began = time.monotonic()
            assert client.post("/callbacks/demo?token=wrong-token-0123456789", json=envelope()).status_code == 401
            took.append(time.monotonic() - began)
    assert max(took) < 0.1, f"refusals took {[round(t, 3) for t in took]} s"


def test_a_text_log_line_stays_one_line():
    from receiver.logs import TEXT_FORMAT, TextFormatter

    record = logging.LogRecord("receiver", logging.WARNING, __file__, 1, "reason=%s", ("a\nforged line",), None)
    assert "\n" not in TextFormatter(TEXT_FORMAT).format(record)


def test_a_forged_host_is_never_a_redirect_target(client):
    from tests.receiver.test_admin import ADMIN

    resp = client.get("/admin", headers={**ADMIN, "Host": "evil.example"})
    assert resp.status_code == 200 and "evil.example" not in resp.headers.get("Location", "")


def test_allowed_hosts_refuse_any_other_host(make_app):
    from tests.receiver.test_admin import ADMIN

    client = make_app(allowed_hosts=("receiver.example.com",)).test_client()
    assert client.get("/admin/", headers={**ADMIN, "Host": "evil.example"}).status_code == 400
    assert client.get("/admin/", headers={**ADMIN, "Host": "receiver.example.com"}).status_code == 200
    assert client.post(URL, json=envelope(), headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (envelope(messageBody={"orderId": ORDER, "note": "\ud800"}), None),  # a lone surrogate where no id is
        (envelope(messageType="ORDER\ud800CREATE"), "messageType"),
        (envelope(messageBody={"salesOrderId": "1192794693444829414", "subOrders": 5}), None),
        ("deep", ("body", "messageBody")),
    ],
    ids=["surrogate in a note", "surrogate in the type", "subOrders not a list", "nested too deep to re-encode"],
)
def test_odd_but_readable_bodies_are_stored_or_named_never_a_500(app, client, body, field):
    if body == "deep":  # deeper than json.dumps can write again, shallower than json.loads can read
        text = json.dumps(envelope(messageBody={"orderId": ORDER, "deep": "@"})).replace('"@"', "[" * 985 + "]" * 985)
    else:
        text = json.dumps(body)
    resp = client.post(URL, data=text, content_type="application/json")
    if field is None:
        assert resp.status_code == 200 and len(stored(app)) == 1
    else:
        assert resp.status_code == 400 and resp.json["field"] in field and stored(app) == []
