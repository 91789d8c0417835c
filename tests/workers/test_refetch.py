"""End to end: a push through the receiver, a real worker re-fetching from the loopback provider."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from receiver.models import Event, EventStatus
from tests.conftest import API_TOKEN, TOKENS, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ALIBABA = "2542285634920880794"
TAOBAO = "200058578338"
BOTH = pytest.mark.parametrize("order_id", [ALIBABA, TAOBAO], ids=["1688", "taobao"])


def send(client, provider, order_id: str, message_type: str, source: str = "demo", **kw):  # type: ignore[no-untyped-def]
    """Send the provider's push for `order_id` to our callback URL."""
    headers, body = provider.push(order_id, message_type, **kw)
    return client.post(f"/callbacks/{source}?token={TOKENS[source]}", data=body, headers=headers)


def order_when(client, order_id: str, source: str = "demo", **expected):  # type: ignore[no-untyped-def]
    """Wait until the read API shows the order with the expected fields; return it."""

    def check():  # type: ignore[no-untyped-def]
        resp = client.get(f"/api/orders/{source}/{order_id}", headers=AUTH)
        if resp.status_code == 200 and all(resp.json[k] == v for k, v in expected.items()):
            return resp.json
        return None

    return wait_for(check)


def events(app) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def events_when(app, *statuses: str) -> list[Event]:  # type: ignore[no-untyped-def]
    """Wait until the inbox holds events in exactly these statuses, in order."""
    return wait_for(
        lambda: (evs := events(app)) and [e.status for e in evs] == list(statuses) and evs,
        explain=lambda: f"inbox holds {[(e.id, e.status, e.attempts, e.last_error) for e in events(app)]}",
    )


def history(order, field: str) -> list[tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return [(h["old"], h["new"]) for h in order["history"] if h["field"] == field]


@pytest.fixture
def provider(sandbox):  # type: ignore[no-untyped-def]
    """The loopback provider behind the `demo` source."""
    return sandbox.providers["xportcn"]


@pytest.fixture
def known(client, provider, worker):  # type: ignore[no-untyped-def]
    """Fetch an order once so that later changes show in its history."""

    def first_fetch(order_id: str):  # type: ignore[no-untyped-def]
        assert send(client, provider, order_id, "ORDER_CREATE").status_code == 200
        return order_when(client, order_id)

    return first_fetch


@BOTH
def test_price_correction(client, provider, known, order_id):
    before = known(order_id)
    resp = send(client, provider, order_id, provider.correct_price(order_id, -150))
    assert resp.status_code == 200 and resp.json == {"ok": True}
    after = order_when(client, order_id, total_amount=before["total_amount"] - 150)
    assert history(after, "total_amount")[-1] == (str(before["total_amount"]), str(before["total_amount"] - 150))
    assert after["discount"] == before["discount"] + 150
    assert after["version"] == before["version"] + 1


@BOTH
def test_status_change(client, provider, known, order_id):
    before = known(order_id)
    send(client, provider, order_id, provider.step_status(order_id))
    after = order_when(client, order_id, status="awaiting_shipment")
    assert history(after, "status")[-1] == (before["status"], "awaiting_shipment")
    assert after["raw_status"] != before["raw_status"]


@BOTH
def test_refund(client, provider, known, order_id):
    known(order_id)
    send(client, provider, order_id, provider.refund(order_id, 500))
    after = order_when(client, order_id, refund_amount=500)
    assert history(after, "refund_amount")[-1] == ("0", "500")
    assert after["lines"][0]["refund_amount"] == 500


def test_order_found_by_any_of_its_ids(client, provider, known):
    order = known(TAOBAO)
    by_number = client.get(f"/api/orders/demo/{order['order_no']}", headers=AUTH).json
    assert by_number["purchase_id"] == TAOBAO and by_number["platform"] == "taobao"
    assert by_number["product_amount"] == 5980 and by_number["lines"][0]["sku_id"] == "23179458212196"


def test_thai_portal_refetches_through_v2(app, client, sandbox, worker):
    thai = sandbox.providers["thai"]
    send(client, thai, ALIBABA, thai.step_status(ALIBABA), source="thai")
    order = order_when(client, ALIBABA, source="thai", status="awaiting_shipment")
    assert order["source"] == "thai"
    assert [path for path, _, _ in sandbox.calls] == ["/v2/alibaba/order/page"]


def test_duplicate_delivery_is_processed_once(app, client, provider, known):
    known(ALIBABA)
    message_type = provider.correct_price(ALIBABA, -100)
    headers, body = provider.push(ALIBABA, message_type)
    for _ in range(3):
        assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", data=body, headers={"Content-Type": "application/json"}).status_code == 200
    events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED)
    order = order_when(client, ALIBABA)
    assert len(history(order, "total_amount")) == 2  # creation, then one correction


def test_pushes_out_of_order_end_in_the_latest_state(app, client, provider, known):
    known(ALIBABA)
    older_type = provider.step_status(ALIBABA)  # awaiting_shipment
    older = provider.push(ALIBABA, older_type)
    newer = provider.push(ALIBABA, provider.step_status(ALIBABA))  # shipped
    for headers, body in (newer, older):
        client.post(f"/callbacks/demo?token={TOKENS['demo']}", data=body, headers=headers)
    events_when(app, *[EventStatus.PROCESSED] * 3)
    order = order_when(client, ALIBABA, status="shipped")
    assert history(order, "status")[-1] == ("awaiting_payment", "shipped")


def test_provider_error_code_dead_letters_the_event(app, client, sandbox, provider, worker):
    sandbox.faults.broken_orders[ALIBABA] = (1001, "order does not belong to this developer")
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [event] = events_when(app, EventStatus.DEAD)
    assert "1001" in event.last_error and "does not belong" in event.last_error
    assert client.get(f"/api/orders/demo/{ALIBABA}", headers=AUTH).status_code == 404


@pytest.mark.parametrize("fault", ["http500", "http429", "timeout", "code"])
def test_transient_provider_failure_is_retried_then_succeeds(app, client, sandbox, provider, worker, fault):
    sandbox.faults.queued = [fault]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [event] = events_when(app, EventStatus.PROCESSED)
    assert event.attempts == 2
    assert order_when(client, ALIBABA)["total_amount"] == 23344
    assert [status for _, _, status in sandbox.calls][-1] == 200


def test_retries_exhausted_dead_letter_the_event(app, client, sandbox, provider, worker, settings):
    sandbox.faults.queued = ["http500"] * (settings.max_retries + 1)
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [event] = events_when(app, EventStatus.DEAD)
    assert event.attempts == settings.max_retries + 1 and "HTTP 500" in event.last_error


def test_wrong_api_secret_dead_letters_with_the_providers_message(app, client, sandbox, worker):
    impostor = sandbox.providers["xportcn"].__class__("ak-demo", "not-the-secret", "2100007341207")
    sandbox.mount("xportcn", impostor)  # the provider now knows another secret for our key
    send(client, impostor, ALIBABA, "ORDER_CREATE", signed=False)
    [event] = events_when(app, EventStatus.DEAD)
    assert "signature error" in event.last_error
