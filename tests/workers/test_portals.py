"""End to end on each Xportcn-family portal: every documented push shape leads to the provider's truth.

Our copy is compared with the provider's own record, in its own fields and units, not through our
mapping of it.
"""
from __future__ import annotations

import pytest

from receiver import simulate
from receiver.models import EventStatus
from tests.workers.test_refetch import events_when, order_when, send

ALIBABA = "2542285634920880794"
TAOBAO = "200058578338"
PORTAL_SOURCES = {"xport": "xport", "demo": "xportcn", "thai": "thai"}  # source -> sandbox prefix
SHAPES = [("1688", "summary"), ("1688", "model"), ("taobao", "taobao"), ("taobao", "summary")]


@pytest.mark.parametrize("source", list(PORTAL_SOURCES))
@pytest.mark.parametrize(("platform", "shape"), SHAPES, ids=[f"{p}-{s}" for p, s in SHAPES])
def test_each_shape_on_each_portal_ends_in_the_providers_state(app, client, sandbox, worker, source, platform, shape):
    provider = sandbox.providers[PORTAL_SOURCES[source]]
    order_id = ALIBABA if platform == "1688" else TAOBAO
    message_type = provider.correct_price(order_id, -155)
    provider.refund(order_id, 515)
    assert send(client, provider, order_id, message_type, source=source, shape=shape).status_code == 200
    record = provider.order(order_id)
    if platform == "1688":
        order = order_when(client, order_id, source, total_amount=record["totalAmount"])
        assert (order["discount"], order["refund_amount"]) == (record["discount"], record["refundAmount"])
        assert order["lines"][0]["refund_amount"] == record["orderDetailInfoVOS"][0]["refund"]
    else:
        order = order_when(client, order_id, source, total_amount=record["purchaseAmount"], refund_amount=515)
        assert order["order_no"] == record["orderNo"] and order["purchase_id"] == str(record["purchaseId"])
    events_when(app, EventStatus.PROCESSED)


def test_a_1688_native_topic_never_heard_of_is_refetched(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    message_type = provider.step_status(ALIBABA)
    message_type = provider.step_status(ALIBABA)  # shipped: 1688's ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS
    assert message_type == "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS"
    send(client, provider, ALIBABA, message_type)
    order = order_when(client, ALIBABA, status="shipped")
    assert order["raw_status"] == "waitbuyerreceive"
    [event] = events_when(app, EventStatus.PROCESSED)
    assert event.kind == "status"  # as 1688 files the topic, whichever family relays it


@pytest.mark.parametrize("shape", ["summary", "model"])
def test_simulate_sends_each_shape(app, settings, live_url, worker, shape):
    lines: list[str] = []
    code = simulate.run(settings.sources["demo"], "price", live_url, settings.database_url, order=ALIBABA, wait=True,
                        echo=lines.append, shape=shape)
    assert code == 0, lines
    assert lines[0].startswith(f"push 1/1 {'1688_' if shape == 'model' else ''}ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY")
    assert any("total_amount=23189" in line for line in lines)


def test_simulate_sends_the_taobao_shape(app, settings, live_url, worker):
    lines: list[str] = []
    code = simulate.run(settings.sources["demo"], "refund", live_url, settings.database_url, order=TAOBAO, wait=True,
                        echo=lines.append, shape="taobao")
    assert code == 0, lines
    assert lines[0].startswith("push 1/1 TAOBAO_ORDER_BUYER_VIEW_ORDER_BUYER_REFUND")
    assert any("refund_amount=515" in line for line in lines)
