"""End to end for DajiSaaS: a signed form push through the receiver, a real worker re-fetching 1688's order."""
from __future__ import annotations

import logging

import pytest

from receiver.sandbox.dajisaas import SEED
from tests.conftest import API_TOKEN, TOKENS, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SOURCE = "daji"
ORDER = str(SEED[0]["baseInfo"]["id"])
XPORTCN_ORDER = "2542285634920880794"


def send(client, provider, message_type: str, order_id: str = ORDER, **kw):  # type: ignore[no-untyped-def]
    """Send the provider's push about `order_id` to our callback URL."""
    headers, body = provider.push(order_id, message_type, **kw)
    return post(client, headers, body)


def post(client, headers, body: bytes, source: str = SOURCE):  # type: ignore[no-untyped-def]
    return client.post(f"/callbacks/{source}?token={TOKENS[source]}", data=body, headers=headers)


def order_when(client, expected_order: str = ORDER, source: str = SOURCE, **expected):  # type: ignore[no-untyped-def]
    """Wait until the read API shows the order with the expected fields; return it."""
    def check():
        resp = client.get(f"/api/orders/{source}/{expected_order}", headers=AUTH)
        if resp.status_code == 200 and all(resp.json[k] == v for k, v in expected.items()):
            return resp.json
        return None
    return wait_for(check)


def events(client, **params):  # type: ignore[no-untyped-def]
    return client.get("/api/events", query_string={"source": SOURCE, **params}, headers=AUTH).json


def settled(client):  # type: ignore[no-untyped-def]
    """Wait until no event of the source is waiting for a worker; return the events."""
    def check():
        listed = events(client)["events"]
        return listed if listed and all(e["status"] in ("processed", "ignored") for e in listed) else None
    return wait_for(check)


def history(order, field: str) -> list[tuple[str | None, str | None]]:
    return [(h["old"], h["new"]) for h in order["history"] if h["field"] == field]


@pytest.fixture
def daji(sandbox):  # type: ignore[no-untyped-def]
    return sandbox.providers["dajisaas"]


def test_first_push_lands_the_order_in_fen(client, daji, worker):
    resp = send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE")
    assert resp.status_code == 200 and resp.json == {"ok": True}
    order = order_when(client)
    assert (order["platform"], order["status"], order["raw_status"]) == ("1688", "awaiting_payment", "waitbuyerpay")
    assert (order["product_amount"], order["shipping_fee"], order["total_amount"]) == (4780, 450, 4730)
    assert [(line["quantity"], line["price"], line["amount"]) for line in order["lines"]] == [(2, 2390, 4280)]


def test_price_correction_lands_in_state_and_history(client, daji, worker):
    assert send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE").status_code == 200
    order_when(client, total_amount=4730)
    message_type = daji.correct_price(ORDER, -150)
    assert send(client, daji, message_type).status_code == 200
    after = order_when(client, total_amount=4580)
    assert history(after, "total_amount")[-1] == ("4730", "4580")
    assert history(after, "discount")[-1] == ("0", "150")
    assert after["lines"][0]["amount"] == 4130
    assert after["history"][-1]["cause"].startswith("event:")


def test_status_steps_through_to_success(client, daji, worker):
    assert send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE").status_code == 200
    order_when(client, status="awaiting_payment")
    for status in ("awaiting_shipment", "shipped", "received", "completed"):
        assert send(client, daji, daji.step_status(ORDER)).status_code == 200
        order_when(client, status=status)
    final = order_when(client, raw_status="success")
    assert history(final, "status") == [
        (None, "awaiting_payment"),
        ("awaiting_payment", "awaiting_shipment"),
        ("awaiting_shipment", "shipped"),
        ("shipped", "received"),
        ("received", "completed"),
    ]
    assert {e["kind"] for e in settled(client)} == {"status"}


def test_buyer_refund_in_sale(client, daji, worker):
    daji.step_status(ORDER)
    assert send(client, daji, "ORDER_BUYER_VIEW_ORDER_PAY").status_code == 200
    order_when(client, status="awaiting_shipment")
    message_type = daji.refund(ORDER, 500)
    assert message_type == "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES"
    assert send(client, daji, message_type).status_code == 200
    after = order_when(client, refund_amount=500)
    assert after["status"] == "awaiting_shipment"
    assert after["lines"][0]["refund_amount"] == 500
    assert history(after, "refund_amount")[-1] == ("0", "500")
    assert sorted(e["kind"] for e in settled(client)) == ["refund", "status"]


def test_logistics_message_is_refetched_without_a_status_change(client, daji, sandbox, worker):
    daji.step_status(ORDER)
    daji.step_status(ORDER)
    assert send(client, daji, "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS").status_code == 200
    before = order_when(client, status="shipped")
    fetched = wait_for(lambda: sandbox.fetches(ORDER))
    assert send(client, daji, "LOGISTICS_BUYER_VIEW_TRACE").status_code == 200
    wait_for(lambda: sandbox.fetches(ORDER) > fetched)
    listed = settled(client)
    assert [(e["kind"], e["status"], e["order_id"]) for e in listed][0] == ("logistics", "processed", ORDER)
    after = order_when(client)
    assert after["status"] == "shipped" and after["history"] == before["history"]


def test_bad_signature_is_401_and_stores_nothing(client, daji):
    resp = send(client, daji, "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", signed=False)
    assert resp.status_code == 401 and resp.json["ok"] is False
    assert events(client)["total"] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b"_dj_signature=0A7CD729C6A667C0A3A0E6972EE4D6EEC408EE25", "application/x-www-form-urlencoded", "message"),
        (b"message=&_dj_signature=ABC", "application/x-www-form-urlencoded", "message"),
        (b'{"msgId": 1, "type": "ORDER_BUYER_VIEW_ORDER_PAY"}', "application/json", "body"),
    ],
)
def test_a_post_without_a_message_is_400_naming_the_field(client, body, content_type, field):
    resp = post(client, {"Content-Type": content_type}, body)
    assert resp.status_code == 400 and resp.json["field"] == field
    assert events(client)["total"] == 0


def test_same_msgid_replayed_is_acknowledged_and_processed_once(client, daji, sandbox, worker):
    first = daji.push(ORDER, "ORDER_BUYER_VIEW_BUYER_MAKE", msg_id=9001)
    assert post(client, *first).status_code == 200
    order_when(client, status="awaiting_payment")
    # A re-send of the same msgId need not be byte for byte the same post: here its fields swap places.
    headers, body = first
    again = headers, "&".join(reversed(body.decode().split("&"))).encode()
    for headers, body in (first, again):
        resp = post(client, headers, body)
        assert resp.status_code == 200 and resp.json == {"ok": True}
    (event,) = settled(client)
    assert event["status"] == "processed"
    assert sandbox.fetches(ORDER) == 1


def test_both_families_run_side_by_side(client, daji, sandbox, worker):
    xportcn = sandbox.providers["xportcn"]
    headers, body = xportcn.push(XPORTCN_ORDER, "ORDER_CREATE")
    assert post(client, headers, body, source="demo").status_code == 200
    assert send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE").status_code == 200
    assert order_when(client, XPORTCN_ORDER, "demo")["total_amount"] == 23344
    assert order_when(client)["total_amount"] == 4730


# --- issue 15: DajiSaaS as its published docs describe it ----------------------------------------
DOC_ORDER = "2257164624870311973"


def event_list(client):  # type: ignore[no-untyped-def]
    return events(client)["events"]


def calls(sandbox, path: str) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for p, _, _ in sandbox.calls if p == path)


def test_an_order_off_the_lists_first_page_is_refetched_through_buyer_view(client, daji, sandbox, worker):
    far = daji.add_orders(30)[-1]  # the list's first page would not hold it
    assert send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE", order_id=far).status_code == 200
    order = order_when(client, far, status="awaiting_payment")
    assert order["total_amount"] == 4730
    assert calls(sandbox, "/alibaba/trade/get/buyerView") >= 1 and calls(sandbox, "/alibaba/trade/getBuyerOrderList") == 0
    assert all(body.get("sign") and "appSecret" not in body for body in daji.requests)


def test_the_documented_order_lands_with_its_line_that_has_no_id(client, daji, worker):
    assert send(client, daji, "ORDER_BUYER_VIEW_BUYER_MAKE", order_id=DOC_ORDER).status_code == 200
    order = order_when(client, DOC_ORDER, status="awaiting_payment")
    assert (order["product_amount"], order["shipping_fee"], order["total_amount"]) == (1011, 115, 1126)
    lines = sorted(order["lines"], key=lambda line: line["line_id"])
    assert [(line["quantity"], line["price"], line["amount"]) for line in lines] == [(5, 180, 896), (5, 23, 115)]
    assert lines[0]["line_id"] == "2257164624870311974" and lines[1]["line_id"].startswith("derived-")
    # A second re-fetch finds the same lines: the derived key is stable.
    daji.step_status(DOC_ORDER)
    assert send(client, daji, "ORDER_BUYER_VIEW_ORDER_PAY", order_id=DOC_ORDER).status_code == 200
    after = order_when(client, DOC_ORDER, status="awaiting_shipment")
    assert sorted(line["line_id"] for line in after["lines"]) == [line["line_id"] for line in lines]
    comings_and_goings = [(h["old"], h["new"]) for h in after["history"] if h["field"].startswith("line:") and "." not in h["field"]]
    assert comings_and_goings == [(None, "added"), (None, "added")]  # and none "present" -> gone


@pytest.mark.parametrize(("change", "message_type", "kind"), [
    ("correct_price", "TAOBAO_PRICE_CHANGE", "price"),
    ("step_status", "TAOBAO_ORDER_STATUS_UPDATE", "status"),
])
def test_a_taobao_message_is_kept_as_ignored_with_its_purchase_id(client, daji, sandbox, change, message_type, kind):
    assert send(client, daji, getattr(daji, change)(ORDER), shape="taobao").status_code == 200
    (event,) = event_list(client)
    assert (event["status"], event["message_type"], event["kind"]) == ("ignored", message_type, kind)
    assert (event["platform"], event["order_id"]) == ("taobao", str(daji.taobao_purchase_id(ORDER)))
    assert event["ignored_reason"] == "Taobao/Tmall message: DajiSaaS documents no Taobao order query"
    assert sandbox.fetches() == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'receiver_ignored_events{{kind="{kind}",platform="taobao",source="daji"}} 1.0' in metrics
    admin = client.get(f"/admin/events/{event['id']}", headers=AUTH)
    assert admin.status_code == 200 and "DajiSaaS documents no Taobao order query" in admin.get_data(as_text=True)


def test_an_echoed_secret_never_reaches_the_dead_letter_or_the_log(client, daji, sandbox, worker, worker_log):
    secret = daji.app_secret
    sandbox.faults.broken_orders[ORDER] = (401, f"appSecret {secret} 无效 (invalid)")
    assert send(client, daji, "ORDER_BUYER_VIEW_ORDER_PAY").status_code == 200
    dead = wait_for(lambda: [e for e in event_list(client) if e["status"] == "dead"])
    assert "***" in dead[0]["last_error"] and secret not in dead[0]["last_error"]
    assert "provider code 401" in dead[0]["last_error"]
    assert secret not in worker_log.read_text()


def test_each_signature_scheme_of_the_provider_is_accepted(client, daji):
    # Our own handler on the family's logger: the app's logging setup may keep records from the root.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("receiver.providers.dajisaas")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        daji.signature_scheme = "value-base64"
        for _ in range(2):
            assert send(client, daji, "ORDER_BUYER_VIEW_ORDER_PAY").status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    named = [r.getMessage() for r in records if "callback.signature_scheme source=daji " in r.getMessage()]
    assert named == ["callback.signature_scheme source=daji scheme=value-base64"]


def test_reconciliation_pages_under_the_providers_page_size_cap(client, daji, environ, monkeypatch):
    from click.testing import CliRunner

    from workers.cli import main

    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    daji.page_size_cap = 2
    added = daji.add_orders(3)
    result = CliRunner().invoke(main, ["reconcile", "--source", "daji"])
    assert result.exit_code == 0, result.output
    assert "page 3:" in result.output
    for order_id in [ORDER, DOC_ORDER, *added]:
        assert client.get(f"/api/orders/daji/{order_id}", headers=AUTH).status_code == 200, order_id


@pytest.mark.parametrize(("kind", "topic"), [
    ("price", "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY"),
    ("status", "ORDER_BUYER_VIEW_ORDER_PAY"),
    ("refund", "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES"),
])
def test_simulate_sends_the_1688_topic_of_each_kind_and_waits_for_buyer_view(app, settings, live_url, sandbox, worker, kind, topic):
    from receiver import simulate

    lines: list[str] = []
    code = simulate.run(settings.sources[SOURCE], kind, live_url, settings.database_url, wait=True, echo=lines.append)
    assert code == 0, lines
    assert lines[0].startswith(f"push 1/1 {topic} order={ORDER} -> 200")
    assert any(line.startswith(f"order {ORDER} (1688)") for line in lines)
    assert calls(sandbox, "/alibaba/trade/get/buyerView") >= 2  # the worker's re-fetch, and simulate's own check


def test_simulate_sends_a_taobao_message_that_is_kept_as_ignored(client, settings, live_url, daji):
    from receiver import simulate

    lines: list[str] = []
    assert simulate.run(settings.sources[SOURCE], "status", live_url, settings.database_url, shape="taobao", echo=lines.append) == 0
    [line] = lines
    (event,) = event_list(client)
    assert line.startswith(f"push 1/1 TAOBAO_ORDER_STATUS_UPDATE order={event['order_id']} -> 200")  # the purchase it names
    assert (event["status"], event["platform"], event["message_type"]) == ("ignored", "taobao", "TAOBAO_ORDER_STATUS_UPDATE")
