"""The Xportcn family against its published docs: signatures, the three push shapes, the documented calls.

The API tests talk to the loopback provider over real HTTP, in process: it checks our signatures with
its own code, so a signing mistake on our side fails them.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from receiver.config import Source
from receiver.errors import BadSignature, MalformedPush, PermanentProviderError, TransientProviderError
from receiver.orders import COMPARED
from receiver.providers import OrderRef, RawPush, family_for
from receiver.providers import xportcn as spec
from receiver.sandbox import Sandbox
from receiver.sandbox.xportcn import XportcnProvider, md5_signature

pytestmark = pytest.mark.unit  # fast: no Redis, no worker, no server

FAMILY = family_for("xportcn")
ALIBABA = "2542285634920880794"
TAOBAO = "200058578338"
PORTALS = ("xportcn", "pandapon", "thai")
CREDS = {"access_key": "ak-unit", "access_secret": "unit-secret-0042", "user_id": "2100007341207"}


def source(portal: str = "pandapon", base_url: str = "https://api.example", **options: Any) -> Source:
    creds = {**CREDS, "portal": portal, **options}
    return Source(name="unit", family="xportcn", base_url=base_url, callback_token="cb-token-unit-0123456789", credentials=creds)


def envelope(message_type: str, body: Any, platform: int = 1, timestamp: str = "1779263269913") -> RawPush:
    data = {"messageType": message_type, "messageBody": body, "messagePlatform": platform, "timestamp": timestamp}
    return RawPush(headers={}, body=json.dumps(data).encode(), content_type="application/json")


# --- signatures ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "timestamp", "nonce", "secret", "expected"),
    [
        # md5sum of the concatenated text, computed outside Python.
        ("58c0201dfdf148eca63cbf6bb5e7cf03", "1715669977082", "nonce-str", "demo-secret-0001", "B5669ED7DB1C036EFE2AE15F30703162"),
        ("58c0201dfdf148eca63cbf6bb5e7cf03", "1715669977", "", "demo-secret-0001", "1B948E6C74D6CABCDAE57BB64E69229C"),
        ("ak-demo", "1715669977082", "", "demo-secret-0001", "9C4B7362D4637CD38A253B19527D0A17"),
    ],
)
def test_signature_known_answers(key: str, timestamp: str, nonce: str, secret: str, expected: str) -> None:
    assert spec.sign(key, timestamp, nonce, secret) == expected


def headers(nonce: str | None = "n0nce", secret: str = CREDS["access_secret"], stamp: str = "1779263269913") -> dict[str, str]:
    h = {"access-key": CREDS["access_key"], "timestamp": stamp, "user-id": CREDS["user_id"]}
    h["signature"] = md5_signature(CREDS["access_key"], stamp, nonce or "", secret)
    return {**h, "nonce-str": nonce} if nonce else h


@pytest.mark.parametrize("nonce", ["n0nce", None], ids=["with nonce", "without nonce"])
@pytest.mark.parametrize("case", [str.upper, str.lower])
def test_a_signed_push_verifies_with_or_without_a_nonce(nonce: str | None, case: Any) -> None:
    h = headers(nonce)
    h["signature"] = case(h["signature"])
    auth = FAMILY.authenticate(source(), RawPush(h, b"{}", "application/json"))
    assert auth.timestamp_ms == 1779263269913 and auth.nonce == h["signature"].upper()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: {**h, "signature": md5_signature(CREDS["access_key"], h["timestamp"], "n0nce", "other-secret")},
        lambda h: {**h, "access-key": "ak-other"},
        lambda h: {**h, "timestamp": "1779263269914"},
        lambda h: {**h, "nonce-str": "another"},
        lambda h: {k: v for k, v in h.items() if k != "signature"},
        lambda h: {k: v for k, v in h.items() if k != "access-key"},
    ],
    ids=["other secret", "other key", "timestamp changed", "nonce changed", "no signature", "no key"],
)
def test_a_push_whose_signature_does_not_verify_is_refused(tamper: Any) -> None:
    with pytest.raises(BadSignature):
        FAMILY.authenticate(source(), RawPush(tamper(headers()), b"{}", "application/json"))


def test_an_unsigned_push_passes_to_the_token_unless_the_source_requires_a_signature() -> None:
    raw = RawPush({}, b"{}", "application/json")
    assert FAMILY.authenticate(source(), raw).nonce is None
    with pytest.raises(BadSignature):
        FAMILY.authenticate(source(require_signature=True), raw)


# --- the three push shapes ----------------------------------------------------------------------
SUMMARY = {"orderId": "3305075341149134260", "orderNo": "PO202605200001", "orderStatus": "WAITING_FOR_PAYMENT", "payStatus": 1,
           "totalAmount": 10000, "shippingFee": 500, "productAmount": 9500, "refundAmount": 0, "refundStatus": None,
           "closeReason": None, "tbCreateTime": "2026-05-20 15:40:00", "payTime": None, "id": "1232742280964604571"}
MODEL = {"baseInfo": {"id": 3305075341149134000, "idOfStr": "3305075341149134260", "status": "waitbuyerpay"}, "productItems": []}
TAOBAO_BODY = {"salesOrderId": "1192794693444829414", "purchaseOrderPriceDTO": {"purchaseTotalFee": 6330},
               "subOrders": [{"purchase_order_outer_id": "2429360295718939689", "purchase_order_line_outer_id": "1", "quantity": 2}]}


@pytest.mark.parametrize(
    ("message_type", "body", "platform", "kind", "order_id", "lookup"),
    [
        ("ORDER_CREATE", json.dumps(SUMMARY), 1, "status", "3305075341149134260",
         {"tbOrderId": "3305075341149134260", "orderNo": "PO202605200001"}),
        ("ORDER_BUYER_VIEW_ORDER_BUYER_REFUND", json.dumps({"refundId": "TQ1234", "orderId": "3296711100591134260"}), 1, "refund",
         "3296711100591134260", {"tbOrderId": "3296711100591134260", "refundId": "TQ1234"}),
        ("1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", MODEL, 1, "price", "3305075341149134260", {"tbOrderId": "3305075341149134260"}),
        ("TAOBAO_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", TAOBAO_BODY, 0, "price", "1192794693444829414",
         {"orderNo": "1192794693444829414", "outerPurchaseId": "2429360295718939689"}),
        ("ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS", {"orderId": "3305075341149134260"}, 1, "status", "3305075341149134260",
         {"tbOrderId": "3305075341149134260"}),
        ("ORDER_PAY_SUCCESS", {"purchaseId": 200058578338}, 0, "status", "200058578338", {"purchaseId": "200058578338"}),
        ("TAOBAO_LOGISTICS_UPDATE", {"purchaseId": 200058578338}, 0, "logistics", "200058578338", {"purchaseId": "200058578338"}),
    ],
    ids=["summary", "summary refund", "1688 model", "taobao", "1688 topic", "taobao summary",
         "unknown type"],
)
def test_each_documented_shape_names_its_order_by_the_ids_it_carries(
    message_type: str, body: Any, platform: int, kind: str, order_id: str, lookup: dict[str, str]
) -> None:
    push = FAMILY.parse_push(source(), envelope(message_type, body, platform))
    assert (push.kind, push.actionable, push.ignored) == (kind, True, None)
    assert push.order == OrderRef(("taobao", "1688")[platform], order_id, lookup)


@pytest.mark.parametrize(("portal", "ignored"), [("pandapon", True), ("xportcn", True), ("thai", False)])
def test_a_1688_push_naming_only_its_order_no_is_kept_where_the_portal_cannot_look_it_up(portal: str, ignored: bool) -> None:
    push = FAMILY.parse_push(source(portal), envelope("ORDER_CANCEL", {"orderNo": "PO202605200001"}))
    assert push.order == OrderRef("1688", "PO202605200001", {"orderNo": "PO202605200001"})
    assert push.actionable is not ignored
    if ignored:
        assert push.ignored == f"the push names its 1688 order only by orderNo, which the {portal} order page cannot look up"


def test_the_platform_comes_from_message_platform_not_from_the_type() -> None:
    push = FAMILY.parse_push(source(), envelope("1688_ORDER_CANCEL", {"orderId": "200058578338"}, platform=0))
    assert push.order is not None and push.order.platform == "taobao"


def test_the_platforms_internal_id_never_names_the_order() -> None:
    push = FAMILY.parse_push(source(), envelope("ORDER_CREATE", {"id": "1232742280964604571", "orderStatus": "CANCEL"}))
    assert (push.order, push.actionable, push.ignored) == (None, False, "the summary body names no order id")


def test_the_dedupe_key_is_the_message_and_its_source() -> None:
    first = FAMILY.parse_push(source(), envelope("ORDER_CREATE", json.dumps(SUMMARY)))
    again = FAMILY.parse_push(source(), envelope("ORDER_CREATE", json.dumps(SUMMARY, indent=1)))
    other_body = FAMILY.parse_push(source(), envelope("ORDER_CREATE", json.dumps({**SUMMARY, "orderStatus": "CANCEL"})))
    other_source = FAMILY.parse_push(dataclasses.replace(source(), name="other"), envelope("ORDER_CREATE", json.dumps(SUMMARY)))
    assert first.dedupe_key == again.dedupe_key
    assert len({first.dedupe_key, other_body.dedupe_key, other_source.dedupe_key}) == 3


def test_an_overlong_id_is_a_malformed_push_naming_it() -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(source(), envelope("ORDER_CREATE", {"orderId": "1" * 65}))
    assert err.value.field == "messageBody.orderId"


# --- the documented calls, against the loopback provider ----------------------------------------
@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """A loopback provider for each portal, under its own name."""
    sandbox = Sandbox().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def portal(box: Sandbox, request: pytest.FixtureRequest) -> tuple[XportcnProvider, Source]:
    """A fresh provider on the portal the test is parametrised with, and the source that talks to it."""
    name = getattr(request, "param", "pandapon")
    provider = box.mount(name, XportcnProvider(**CREDS, portal=name))
    return provider, source(name, box.base_url(name), )  # type: ignore[return-value]


ALL_PORTALS = pytest.mark.parametrize("portal", PORTALS, indirect=True)


@ALL_PORTALS
def test_a_1688_order_is_refetched_by_the_documented_call(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.correct_price(ALIBABA, -155)
    [snap] = FAMILY.fetch_orders(requests.Session(), src, OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA}))
    record = provider.order(ALIBABA)
    assert (snap.provider_order_id, snap.total_amount, snap.discount) == (ALIBABA, record["totalAmount"], record["discount"])
    assert (snap.product_amount, snap.shipping_fee) == (22599, 745)
    [(path, asked)] = provider.requests
    if src.credentials["portal"] == "pandapon":
        assert (path, asked) == ("/alibaba/order/detail", {"webSite": "1688", "orderId": ALIBABA})
    else:
        assert path.endswith("/alibaba/order/page") and asked["tbOrderId"] == ALIBABA


def test_the_order_detail_and_the_order_page_give_the_same_order(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.refund(ALIBABA, 515)
    provider.set_status(ALIBABA, 2)
    [by_detail] = FAMILY.fetch_orders(requests.Session(), src, OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA}))
    [by_page] = [o for page in FAMILY.list_orders(requests.Session(), src, datetime.now(timezone.utc) - timedelta(hours=1),
                                                   datetime.now(timezone.utc) + timedelta(minutes=1)) for o in page if o.platform == "1688"]
    assert [p for p, _ in provider.requests[:1]] == ["/alibaba/order/detail"]
    compared = (*COMPARED, "lines")
    assert {f: getattr(by_detail, f) for f in compared} == {f: getattr(by_page, f) for f in compared}
    assert by_detail.raw_status == "waitsellersend" and by_detail.refund_amount == 515


@ALL_PORTALS
def test_reconciliation_reads_every_page_under_the_providers_page_cap(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.page_cap = 20
    created = provider.add_orders(44) + provider.add_orders(3, platform="taobao")
    old = provider.add_orders(2, created=datetime.now(timezone.utc) - timedelta(days=3))
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    seen = [o.provider_order_id for page in FAMILY.list_orders(requests.Session(), src, since, datetime.now(timezone.utc) + timedelta(minutes=1)) for o in page]
    assert sorted(seen) == sorted([ALIBABA, TAOBAO, *created])  # the old ones are outside the window
    assert not set(old) & set(seen)


def test_a_taobao_refund_amount_comes_from_the_after_sales_query(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.refund(TAOBAO, 515)
    refund_id = provider.taobao[TAOBAO]["subOrderVOS"][0]["refundId"]
    ref = OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO, "refundId": refund_id})
    [snap] = FAMILY.fetch_orders(requests.Session(), src, ref)
    assert (snap.refund_amount, snap.lines[0].refund_amount, snap.lines[0].amount) == (515, 515, 5980)
    assert ("/open/order/refund/query", {"refundId": refund_id}) in provider.requests


@pytest.mark.parametrize("portal", ["thai"], indirect=True)
def test_the_thai_portal_asks_the_v2_refund_query(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.refund(TAOBAO, 515)
    [snap] = FAMILY.fetch_orders(requests.Session(), src, OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO}))
    assert snap.refund_amount == 515
    assert "/v2/taobao/order/refund/query" in [p for p, _ in provider.requests]


def test_a_taobao_push_finds_its_purchase_among_those_of_one_order_no(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    [other] = provider.add_orders(1, platform="taobao")
    provider.taobao[other]["orderNo"] = provider.taobao[TAOBAO]["orderNo"]  # one sales order, two purchases
    ref = FAMILY.parse_push(src, RawPush(*provider.push(TAOBAO, provider.correct_price(TAOBAO), shape="taobao"), "application/json")).order
    assert ref is not None
    [snap] = FAMILY.fetch_orders(requests.Session(), src, ref)
    assert snap.provider_order_id == TAOBAO and snap.total_amount == provider.taobao[TAOBAO]["purchaseAmount"]


def test_an_order_the_provider_does_not_have_is_a_permanent_error(portal: tuple[XportcnProvider, Source]) -> None:
    _, src = portal
    with pytest.raises(PermanentProviderError, match="not found|不存在"):
        FAMILY.fetch_orders(requests.Session(), src, OrderRef("1688", "1" * 19, {"tbOrderId": "1" * 19}))


class _Canned:
    """An HTTP client that answers every call with one JSON body."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def post(self, url: str, **kwargs: Any) -> Any:
        return type("Resp", (), {"status_code": 200, "json": lambda _: self.answer, "text": ""})()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"requestId": "r", "code": 200, "msg": "成功", "data": {"total": 1, "data": [], "code": 500, "msg": "busy"}}, TransientProviderError),
        ({"requestId": "r", "code": 200, "msg": "成功", "data": {"total": 1, "data": [], "code": 1001, "msg": "no"}}, PermanentProviderError),
        ({"total": 1, "data": [], "code": 401}, PermanentProviderError),
    ],
    ids=["nested, inner code transient", "nested, inner code permanent", "flat, error code"],
)
def test_the_pages_own_code_is_checked(answer: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        FAMILY.ping(_Canned(answer), source())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [{"total": 7, "data": [], "code": 200}, {"requestId": "r", "code": 200, "msg": "成功", "data": {"total": 7, "data": [], "code": 200}}],
    ids=["flat", "nested"],
)
def test_both_page_shapes_are_read(answer: Any) -> None:
    assert "(7 order(s))" in FAMILY.ping(_Canned(answer), source())  # type: ignore[arg-type]


# --- the loopback provider keeps to the docs ----------------------------------------------------
def test_the_loopback_provider_ignores_undocumented_filters_and_caps_pages(box: Sandbox) -> None:
    provider = box.mount("rules", XportcnProvider(**CREDS, portal="pandapon"))
    provider.add_orders(30)
    signed = {"access-key": CREDS["access_key"], "timestamp": str(int(datetime.now().timestamp() * 1000)), "user-id": CREDS["user_id"]}
    signed["signature"] = md5_signature(CREDS["access_key"], signed["timestamp"], "", CREDS["access_secret"])
    code, answer = provider.handle("/alibaba/order/page", signed, json.dumps({"orderNo": "nobody", "pageSize": 100}).encode())
    assert (code, answer["total"], len(answer["data"])) == (200, 31, 20)  # PandaPon's page has no orderNo filter
    code, answer = provider.handle("/alibaba/order/page", {**signed, "signature": "0" * 32}, b"{}")
    assert answer["code"] == 401


# --- the order mappings, on the docs' own records ------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status"),
    [(12, "awaiting_payment"), (0, "awaiting_payment"), (1, "awaiting_payment"), (2, "awaiting_payment"),
     (3, "awaiting_payment"), (5, "awaiting_payment"), (10, "awaiting_shipment"), (11, "shipped"), (4, "closed"), (9, "other"),
     (77, "other")],
)
def test_taobao_purchase_statuses_as_documented(code: int, status: str) -> None:
    record = XportcnProvider(**CREDS).order(TAOBAO)
    record["status"] = code
    snap = spec._taobao_order(record, {})
    assert (snap.status, snap.raw_status) == (status, str(code))


def test_a_taobao_purchase_maps_in_fen_with_its_ids() -> None:
    record = XportcnProvider(**CREDS).order(TAOBAO)  # 000's record: 2 x 29.90 yuan, 3.50 shipping, in fen
    snap = spec._taobao_order(record, {})
    assert (snap.provider_order_id, snap.purchase_id, snap.order_no) == (TAOBAO, TAOBAO, "1192794693444829414")
    assert (snap.product_amount, snap.shipping_fee, snap.total_amount, snap.discount) == (5980, 350, 6330, 0)
    (line,) = snap.lines
    assert (line.line_id, line.quantity, line.price, line.amount, line.sku_id) == ("1192794699010671091", 2, 2990, 5980, "23179458212196")


@pytest.mark.parametrize(
    ("code", "raw"), [(1, "waitbuyerpay"), (2, "waitsellersend"), (3, "waitbuyerreceive"), (4, "confirm_goods"),
                      (5, "success"), (6, "cancel"), (7, "terminated"), (8, "8")],
)
def test_a_1688_page_record_maps_with_1688s_status_names(code: int, raw: str) -> None:
    record = XportcnProvider(**CREDS).order(ALIBABA)
    record["orderStatus"] = code
    snap = spec._alibaba_order(record)
    assert snap.raw_status == raw
    assert (snap.provider_order_id, snap.order_no) == (ALIBABA, "1232742280398373686")  # never the row's own `id`
    assert (snap.product_amount, snap.shipping_fee, snap.total_amount) == (22599, 745, 23344)


def test_a_failing_refund_query_leaves_the_lists_own_state(portal: tuple[XportcnProvider, Source]) -> None:
    provider, src = portal
    provider.refund(TAOBAO, 515)
    provider.refunds.clear()  # the query ("in development" in the docs) knows no case
    [snap] = FAMILY.fetch_orders(requests.Session(), src, OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO}))
    assert snap.refund_amount == 5980  # refunded per the list, in full as it gives no amount


class _Pages:
    """An HTTP client answering each call with the next of its answers, recording what it was asked."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.asked = list(answers), []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        self.asked.append(json)
        answer = self.answers.pop(0)
        return type("Resp", (), {"status_code": 200, "json": lambda _: answer, "text": ""})()


def test_a_list_without_a_total_is_read_until_an_empty_page() -> None:
    record = XportcnProvider(**CREDS).order(ALIBABA)
    flat = lambda n: {"data": [record] * n, "code": 200}  # noqa: E731 - no total, as a server might leave it out
    http = _Pages(flat(50), flat(50), flat(3), flat(0), {"total": 0, "data": [], "code": 200})
    now = datetime.now(timezone.utc)
    pages = list(FAMILY.list_orders(http, source(), now - timedelta(days=1), now))  # type: ignore[arg-type]
    assert [len(p) for p in pages] == [50, 50, 3]
    assert [a["pageNum"] for a in http.asked] == [1, 2, 3, 4, 1]  # then the Taobao list, empty
