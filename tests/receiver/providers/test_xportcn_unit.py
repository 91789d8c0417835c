"""The Xportcn family's details, each on its own: what a refused push says, which ids a body names,
the calls it makes (to a recording stand-in), and how each record field maps or is refused.

Records are the documented examples of shared/provider-docs, outside this repository (000: the Taobao
purchase list, 002: the 1688 order page and detail, via the sandbox's seeds), with fees, quantities above 1 and fractional yuan.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from receiver.config import Source
from receiver.errors import BadSignature, MalformedPush, PermanentProviderError
from receiver.providers import MAX_PAGES, OrderRef, RawPush, family_for
from receiver.providers import xportcn as spec
from receiver.sandbox.xportcn import ALIBABA_SEED, TAOBAO_SEED

pytestmark = pytest.mark.unit

FAMILY = family_for("xportcn")
CREDS = {"access_key": "ak-unit", "access_secret": "unit-secret-0042", "user_id": "2100007341207"}
ALIBABA = "2542285634920880794"
TAOBAO = "200058578338"


def source(portal: str = "pandapon", **options: Any) -> Source:
    return Source(name="unit", family="xportcn", base_url="https://api.example", callback_token="cb-token-unit-0123456789",
                  credentials={**CREDS, "portal": portal, **options}, timeout=3.5)


def raw(data: Any, headers: dict[str, str] | None = None) -> RawPush:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return RawPush(headers=headers or {}, body=body, content_type="application/json")


def envelope(message_type: str = "ORDER_CREATE", body: Any = None, platform: Any = 1, timestamp: Any = "1779263269913") -> dict[str, Any]:
    return {"messageType": message_type, "messageBody": {"orderId": ALIBABA} if body is None else body,
            "messagePlatform": platform, "timestamp": timestamp}


# --- refused pushes say why, and name the field ---------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        (b"{not json", "body is not valid JSON", "body"),
        (b"\xff\xfe", "body is not valid JSON", "body"),
        (b"[1, 2]", "body must be a JSON object", "body"),
        (envelope(platform=2), "messagePlatform: ['Must be one of: 0, 1.']", "messagePlatform"),
        (envelope(platform="1"), "messagePlatform: ['Not a valid integer.']", "messagePlatform"),
        (envelope(timestamp="17792632699x3"), "timestamp: ['must be a string of digits']", "timestamp"),
        (envelope(timestamp=True), "timestamp: ['must be a string of digits']", "timestamp"),
        (envelope(timestamp=1.5), "timestamp: ['must be a string of digits']", "timestamp"),
        (envelope(body="{not json"), "messageBody: ['must be a JSON object or a string holding one']", "messageBody"),
        (envelope(body="[1]"), "messageBody: ['must be a JSON object or a string holding one']", "messageBody"),
        (envelope(body=[1]), "messageBody: ['must be a JSON object or a string holding one']", "messageBody"),
        (envelope(body={"orderId": "1" * 65}), "messageBody.orderId is longer than 64 characters", "messageBody.orderId"),
        (envelope(body={"orderId": "25422856\n34920880794"}), "messageBody.orderId holds a control character", "messageBody.orderId"),
        (envelope(body={"baseInfo": {"idOfStr": "2" * 65}}), "messageBody.baseInfo.idOfStr is longer than 64 characters",
         "messageBody.baseInfo.idOfStr"),
        (envelope(body={"salesOrderId": "11927946\u20283444829414"}, platform=0), "messageBody.salesOrderId holds a control character",
         "messageBody.salesOrderId"),
        (envelope(body={"salesOrderId": "1192794693444829414", "subOrders": [{"purchase_order_outer_id": "9" * 65}]}, platform=0),
         "messageBody.subOrders[].purchase_order_outer_id is longer than 64 characters", "messageBody.subOrders[].purchase_order_outer_id"),
    ],
    ids=["not json", "not utf-8", "an array", "platform 2", "platform as text", "timestamp letters", "timestamp true",
         "timestamp fraction", "body string not json", "body string array", "body array", "id too long", "id newline",
         "model id too long", "taobao id line separator", "sub-order id too long"],
)
def test_a_malformed_push_says_why_and_names_the_field(body: Any, message: str, field: str) -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(source(), raw(body))
    assert (err.value.message, err.value.field) == (message, field)


def test_a_body_nesting_too_deep_is_malformed() -> None:
    deep: Any = {"orderId": ALIBABA}
    for _ in range(100_000):
        deep = {"n": deep}
    with pytest.raises(MalformedPush) as err:
        spec.dedupe_key("unit", {"messageBody": deep})
    assert (err.value.message, err.value.field) == ("messageBody nests too deep", "messageBody")


@pytest.mark.parametrize("timestamp", ["1779263269913", 1779263269913])
def test_the_envelope_timestamp_is_digits_or_a_number(timestamp: Any) -> None:
    assert FAMILY.parse_push(source(), raw(envelope(timestamp=timestamp))).order == OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA})


def test_a_message_body_may_be_an_object_or_a_string_holding_one() -> None:
    as_text = FAMILY.parse_push(source(), raw(envelope(body=json.dumps({"orderId": ALIBABA}))))
    as_object = FAMILY.parse_push(source(), raw(envelope(body={"orderId": ALIBABA})))
    assert as_text.order == as_object.order == OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA})


# --- signatures: what a refusal says ---------------------------------------------------------------
def signed(stamp: str = "1779263269913", nonce: str = "Nq7Rk2Zp0xW4mV9sT1bC6dF8gH3jL5aE") -> dict[str, str]:
    text = f"{CREDS['access_key']}{stamp}{nonce}{CREDS['access_secret']}"
    return {"access-key": CREDS["access_key"], "timestamp": stamp, "nonce-str": nonce,
            "signature": hashlib.md5(text.encode()).hexdigest().upper()}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"signature": "ABC"}, "signature headers incomplete, missing access-key, timestamp"),
        ({"access-key": "ak-unit", "timestamp": "1779263269913"}, "signature headers incomplete, missing signature"),
        ({**signed(), "signature": "0" * 32}, "signature does not verify"),
        ({**signed(), "access-key": "ak-other"}, "signature does not verify"),
        (signed(stamp="17792632699x3"), "timestamp header is not a number"),
    ],
)
def test_a_refused_signature_says_why(headers: dict[str, str], message: str) -> None:
    with pytest.raises(BadSignature) as err:
        FAMILY.authenticate(source(), raw(b"{}", headers))
    assert err.value.message == message


def test_a_source_requiring_signatures_says_so() -> None:
    with pytest.raises(BadSignature) as err:
        FAMILY.authenticate(source(require_signature=True), raw(b"{}"))
    assert err.value.message == "push is not signed and this source requires a signature"


@pytest.mark.parametrize(("stamp", "ms"), [("1779263269913", 1779263269913), ("1779263269", 1779263269000),
                                           ("1000000000000", 1000000000000000), ("1000000000001", 1000000000001)])
def test_a_header_timestamp_in_seconds_or_milliseconds(stamp: str, ms: int) -> None:
    assert spec.timestamp_ms(stamp) == ms
    assert FAMILY.authenticate(source(), raw(b"{}", signed(stamp=stamp))).timestamp_ms == ms


def test_signed_headers_carry_a_fresh_32_character_nonce_and_verify() -> None:
    a, b = spec.signed_headers("ak-unit", "unit-secret-0042", "2100007341207", now_ms=1779263269913), spec.signed_headers("ak-unit", "unit-secret-0042", "2100007341207")
    assert (a["access-key"], a["timestamp"], a["user-id"]) == ("ak-unit", "1779263269913", "2100007341207")
    assert len(a["nonce-str"]) == 32 and a["nonce-str"].isalnum() and a["nonce-str"] != b["nonce-str"]
    expected = hashlib.md5(f"ak-unit1779263269913{a['nonce-str']}unit-secret-0042".encode()).hexdigest().upper()
    assert a["signature"] == expected
    assert abs(int(b["timestamp"]) - int(a["timestamp"])) < 10**12  # milliseconds now, not seconds


# --- which ids a body names ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("platform", "body", "ids"),
    [
        ("1688", {"baseInfo": {"id": 3305075341149134260, "refundId": "TQ1234"}}, {"tbOrderId": "3305075341149134260", "refundId": "TQ1234"}),
        ("1688", {"baseInfo": {"idOfStr": "3305075341149134260", "id": 3305075341149134000}}, {"tbOrderId": "3305075341149134260"}),
        ("taobao", {"salesOrderId": "1192794693444829414", "subOrders": "not a list"}, {"orderNo": "1192794693444829414"}),
        ("taobao", {"subOrders": [{"purchase_order_outer_id": "2429360295718939689", "refund_id": "RF88"}, "x"]},
         {"outerPurchaseId": "2429360295718939689", "refundId": "RF88"}),
        ("taobao", {"orderId": 200058578338, "orderNo": "1192794693444829414", "refundId": "RF88"},
         {"purchaseId": "200058578338", "orderNo": "1192794693444829414", "refundId": "RF88"}),
        ("1688", {"orderId": "3305075341149134260", "orderNo": "PO202605200001", "refundId": "TQ1", "id": "1232742280964604571"},
         {"tbOrderId": "3305075341149134260", "orderNo": "PO202605200001", "refundId": "TQ1"}),
    ],
    ids=["model numeric id", "model string id first", "taobao sub-orders not a list", "taobao sub-orders", "taobao summary", "1688 summary"],
)
def test_body_ids(platform: str, body: dict[str, Any], ids: dict[str, str]) -> None:
    assert spec.body_ids(spec.body_shape(body), platform, body) == ids


@pytest.mark.parametrize(("body", "shape"), [({"baseInfo": {}}, "model"), ({"baseInfo": "x"}, "summary"), ({"salesOrderId": None}, "taobao"),
                                             ({"subOrders": []}, "taobao"), ({"subOrders": {}}, "summary"), ({"orderId": 1}, "summary")])
def test_body_shape(body: dict[str, Any], shape: str) -> None:
    assert spec.body_shape(body) == shape


@pytest.mark.parametrize(("message_type", "kind"), [("ORDER_CREATE", "status"), ("TAOBAO_ORDER_BUYER_VIEW_ORDER_BUYER_REFUND", "refund"),
                                                    ("1688_LOGISTICS_MAIL_NO_CHANGE", "logistics"), ("PACKAGE_SENDGOODS", "logistics"),
                                                    ("PRICE_NOTICE", "price"), ("SOMETHING_NEW", "other"), ("ORDER_X", "status")])
def test_message_kind(message_type: str, kind: str) -> None:
    assert spec.message_kind(message_type) == kind


def test_a_taobao_push_naming_no_listed_id_is_kept_with_the_reason() -> None:
    push = FAMILY.parse_push(source(), raw(envelope(body={"refundId": "RF88"}, platform=0)))
    assert (push.order, push.ignored) == (None, "the summary body names no order id")
    assert spec.unreachable(source(), OrderRef("taobao", "RF88", {"refundId": "RF88"})) == \
        "the push names its Taobao order by no id the purchase list can look up"
    assert spec.unreachable(source(), OrderRef("taobao", TAOBAO, {"refundId": "RF88", "orderNo": "1192794693444829414"})) is None


def test_the_dedupe_key_is_the_sha256_of_the_source_and_the_canonical_envelope() -> None:
    """Stored keys must stay what they were: a changed formula would let every redelivery of a stored
    message in again after an upgrade. Computed here by hand."""
    env = {"messageType": "ORDER_CREATE", "messagePlatform": 1, "timestamp": "1779263269913", "messageBody": {"orderNo": "PO1", "orderId": ALIBABA}}
    canonical = '{"messageBody":{"orderId":"2542285634920880794","orderNo":"PO1"},"messagePlatform":1,"messageType":"ORDER_CREATE","timestamp":"1779263269913"}'
    assert spec.dedupe_key("demo", env) == hashlib.sha256(f"demo\n{canonical}".encode()).hexdigest()


# --- the calls, against a recording stand-in -------------------------------------------------------
class Recorder:
    """An HTTP client answering each call with the next answer (a JSON body), recording each call."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.calls = list(answers), []  # type: ignore[var-annotated]

    def _answer(self, method: str, url: str, json: Any = None, params: Any = None, headers: Any = None, timeout: Any = None,
                allow_redirects: Any = None) -> Any:
        self.calls.append({"method": method, "url": url, "json": json, "params": params, "headers": headers, "timeout": timeout})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return type("Resp", (), {"status_code": 200, "json": lambda _: copy.deepcopy(answer), "text": ""})()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._answer("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._answer("POST", url, **kwargs)


def page(records: list[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
    return {"code": 200, "data": records, **({} if total is None else {"total": total})}


def ok(data: Any) -> dict[str, Any]:
    return {"code": 200, "msg": "成功", "data": data}


@pytest.mark.parametrize(("answer", "text"), [(page([], 7), "signed order list call answered (7 order(s))"),
                                              (page([]), "signed order list call answered (? order(s))"),
                                              (page([], 0), "signed order list call answered (0 order(s))")])
def test_ping_reads_one_record_of_the_1688_list_signed(answer: Any, text: str) -> None:
    http = Recorder(answer)
    assert FAMILY.ping(http, source("thai")) == text  # type: ignore[arg-type]
    [call] = http.calls
    assert (call["method"], call["url"], call["json"], call["timeout"]) == ("POST", "https://api.example/v2/alibaba/order/page",
                                                                            {"pageNum": 1, "pageSize": 1}, 3.5)
    assert call["headers"]["user-id"] == "2100007341207" and len(call["headers"]["signature"]) == 32


def alibaba_record(n: int) -> dict[str, Any]:
    r = copy.deepcopy(ALIBABA_SEED[0])
    r["tbOrderId"] = str(2542285634920880000 + n)
    return r


def list_1688(http: Recorder, portal: str = "pandapon") -> list[list[str]]:
    from datetime import datetime, timezone

    since, until = datetime(2026, 5, 19, 16, 0, tzinfo=timezone.utc), datetime(2026, 5, 20, 16, 0, tzinfo=timezone.utc)
    pages = FAMILY.list_orders(http, source(portal), since, until)  # type: ignore[arg-type]
    return [[s.provider_order_id[-3:] for s in p] for p in pages if p and p[0].platform == "1688"]


def test_the_list_follows_total_in_the_servers_page_size() -> None:
    records = [alibaba_record(n) for n in range(45)]
    http = Recorder(page(records[:20], 45), page(records[20:40], 45), page(records[40:], 45), page([], 0))
    assert [len(p) for p in list_1688(http)] == [20, 20, 5]
    asked = [c["json"] for c in http.calls if c["url"].endswith("/alibaba/order/page")]
    assert [(a["pageNum"], a["pageSize"]) for a in asked] == [(1, 50), (2, 20), (3, 20)]
    assert (asked[0]["orderTimeBegin"], asked[0]["orderTimeEnd"]) == ("2026-05-20 00:00:00", "2026-05-21 00:00:00")
    taobao = [c["json"] for c in http.calls if c["url"].endswith("/open/purchase/page")]
    assert (taobao[0]["beginDateTime"], taobao[0]["endDateTime"], taobao[0]["pageNum"]) == ("2026-05-20 00:00:00", "2026-05-21 00:00:00", 1)


def test_the_list_stops_when_it_has_seen_total() -> None:
    records = [alibaba_record(n) for n in range(21)]
    http = Recorder(page(records[:20], 21), page(records[20:], 21), page([], 0))
    assert [len(p) for p in list_1688(http)] == [20, 1]
    http = Recorder(page(records[:20], 40), page(records[:20], 40), page([], 0))
    list_1688(http)
    assert len([c for c in http.calls if c["url"].endswith("/alibaba/order/page")]) == 2


def test_a_list_that_never_ends_is_read_for_max_pages_at_most() -> None:
    http = Recorder(page([alibaba_record(1)]))  # a full page every time, and no total
    assert sum(1 for _ in spec._pages(http, source(), "/alibaba/order/page", {})) == MAX_PAGES == 200  # type: ignore[arg-type]
    assert len(http.calls) == 200


def taobao_record(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(TAOBAO_SEED[0])
    r.update(changes)
    return r


def test_a_taobao_order_is_looked_up_by_its_purchase_id_as_a_number() -> None:
    http = Recorder(page([taobao_record()]))
    [snap] = FAMILY.fetch_orders(http, source(), OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO, "orderNo": "1192794693444829414"}))  # type: ignore[arg-type]
    assert snap.provider_order_id == TAOBAO
    [call] = http.calls
    assert (call["url"], call["json"]) == ("https://api.example/open/purchase/page", {"pageNum": 1, "pageSize": 20, "purchaseId": 200058578338})


def test_a_taobao_lookup_by_order_no_sends_it_as_text() -> None:
    http = Recorder(page([taobao_record()]))
    FAMILY.fetch_orders(http, source(), OrderRef("taobao", "1192794693444829414", {"orderNo": "1192794693444829414"}))  # type: ignore[arg-type]
    assert http.calls[0]["json"] == {"pageNum": 1, "pageSize": 20, "orderNo": "1192794693444829414"}


def test_a_lookup_that_finds_nothing_says_which_order_and_where() -> None:
    http = Recorder(page([taobao_record(purchaseId=200058578999)]))
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(http, source(), OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO}))  # type: ignore[arg-type]
    assert err.value.message == f"order {TAOBAO} not found at unit"


def test_a_lookup_without_a_filterable_id_says_so() -> None:
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(Recorder(page([])), source("xportcn"), OrderRef("1688", "PO1", {"orderNo": "PO1"}))  # type: ignore[arg-type]
    assert err.value.message == "order PO1: the push carries no id the 1688 list filters by"


def test_a_1688_order_on_the_thai_portal_is_found_by_order_no() -> None:
    http = Recorder(page([{**alibaba_record(7), "orderNo": "1232742280398373999"}, copy.deepcopy(ALIBABA_SEED[0])]))
    [snap] = FAMILY.fetch_orders(http, source("thai"), OrderRef("1688", "1232742280398373686", {"orderNo": "1232742280398373686"}))  # type: ignore[arg-type]
    assert (snap.provider_order_id, snap.order_no) == (ALIBABA, "1232742280398373686")
    assert http.calls[0]["json"] == {"pageNum": 1, "pageSize": 20, "orderNo": "1232742280398373686"}


def test_a_pushed_refund_is_asked_for_even_when_the_list_does_not_link_it_yet() -> None:
    refund = {"refundOrderAggregate": {"refundOrder": {"refundFee": 1295, "refundStatus": 100},
                                       "purchaseOrderLine": {"purchaseOrderLineId": "200058578339"}}}
    http = Recorder(page([taobao_record()]), ok(refund))
    [snap] = FAMILY.fetch_orders(http, source(), OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO, "refundId": "RF88"}))  # type: ignore[arg-type]
    assert http.calls[1]["method"] == "GET" and http.calls[1]["params"] == {"refundId": "RF88"}
    assert http.calls[1]["url"] == "https://api.example/open/order/refund/query"
    assert (snap.refund_amount, snap.lines[0].refund_amount) == (1295, 1295)  # matched by its purchase line


def detail_model(**base: Any) -> dict[str, Any]:
    info = {"idOfStr": ALIBABA, "id": 2542285634920880794, "status": "waitsellersend", "sumProductPayment": 225.99, "shippingFee": 7.45,
            "totalAmount": 233.44, "discount": 0, "refund": 0, **base}
    return {"baseInfo": info, "productItems": [{"subItemIDString": ALIBABA, "quantity": 3, "price": 75.33, "itemAmount": 225.99}]}


def test_the_1688_order_detail_is_asked_by_post_and_the_pushed_order_no_kept() -> None:
    http = Recorder(ok(detail_model()))
    [snap] = FAMILY.fetch_orders(http, source(), OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA, "orderNo": "1232742280398373686"}))  # type: ignore[arg-type]
    [call] = http.calls
    assert (call["method"], call["url"], call["json"]) == ("POST", "https://api.example/alibaba/order/detail", {"webSite": "1688", "orderId": ALIBABA})
    assert (snap.provider_order_id, snap.order_no, snap.status, snap.total_amount, snap.shipping_fee) == (
        ALIBABA, "1232742280398373686", "awaiting_shipment", 23344, 745)


def test_a_detail_with_only_the_rounded_numeric_id_is_the_order_asked_for() -> None:
    http = Recorder(ok(detail_model(idOfStr=None, id=2542285634920880794.0)))
    [snap] = FAMILY.fetch_orders(http, source(), OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA}))  # type: ignore[arg-type]
    assert (snap.provider_order_id, snap.order_no) == (ALIBABA, None)


@pytest.mark.parametrize(("data", "message"), [(None, f"order {ALIBABA} not found at unit"), ([], f"order {ALIBABA} not found at unit"),
                                               ({"baseInfo": "x"}, f"order {ALIBABA} not found at unit"),
                                               (detail_model(idOfStr="3305075341149134260"), f"order detail for {ALIBABA} answered order 3305075341149134260"),
                                               (detail_model(idOfStr=None, id=1), f"order detail for {ALIBABA} answered order 1")])
def test_a_detail_that_is_not_the_order_asked_for_is_refused(data: Any, message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(Recorder(ok(data)), source(), OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA}))  # type: ignore[arg-type]
    assert err.value.message == message


def test_held_order_refs() -> None:
    assert FAMILY.held_order_ref("1688", ALIBABA, "PO1", None) == OrderRef("1688", ALIBABA, {"tbOrderId": ALIBABA, "orderNo": "PO1"})
    assert FAMILY.held_order_ref("taobao", TAOBAO, None, TAOBAO) == OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO})


# --- the 1688 page record, field by field ----------------------------------------------------------
@pytest.mark.parametrize("field", ["productAmount", "shippingFee", "discount", "totalAmount", "refundAmount", "orderStatus"])
def test_an_unreadable_1688_amount_is_refused_naming_it(field: str) -> None:
    record = copy.deepcopy(ALIBABA_SEED[0])
    record[field] = "12.5"
    with pytest.raises(PermanentProviderError) as err:
        spec._alibaba_order(record)
    assert err.value.message == f"{field} is not an integer: '12.5'"


@pytest.mark.parametrize("field", ["quantity", "price", "itemAmount", "refund", "status"])
def test_an_unreadable_1688_line_field_is_refused_naming_it(field: str) -> None:
    record = copy.deepcopy(ALIBABA_SEED[0])
    record["orderDetailInfoVOS"][0][field] = "7.5"
    with pytest.raises(PermanentProviderError) as err:
        spec._alibaba_order(record)
    assert err.value.message == f"{'orderStatus' if field == 'status' else field} is not an integer: '7.5'"


def test_a_1688_record_without_its_order_number_is_refused() -> None:
    record = copy.deepcopy(ALIBABA_SEED[0])
    del record["tbOrderId"]
    with pytest.raises(PermanentProviderError) as err:
        spec._alibaba_order(record)
    assert err.value.message == "1688 order record has no tbOrderId"


def test_a_1688_record_maps_every_field() -> None:
    record = copy.deepcopy(ALIBABA_SEED[0])
    record.update(discount=155, totalAmount=23189, refundAmount=515, orderStatus=3)
    record["orderDetailInfoVOS"][0].update(refund=515, status=None)
    snap = spec._alibaba_order(record)
    assert (snap.platform, snap.currency, snap.purchase_id, snap.modified_at) == ("1688", "CNY", None, None)
    assert (snap.status, snap.raw_status, snap.discount, snap.total_amount, snap.refund_amount) == ("shipped", "waitbuyerreceive", 155, 23189, 515)
    [line] = snap.lines
    assert (line.line_id, line.product_id, line.sku_id, line.quantity, line.price, line.amount, line.refund_amount, line.raw_status) == (
        ALIBABA, "736985424157", "5739035294244", 3, 7533, 22599, 515, None)
    assert line.title == "24S跨境欧美潮牌恶魔岛多口袋松紧休闲工装短裤男女沙滩五分裤"


def test_1688_lines_sharing_a_sub_order_id_use_the_pages_own_ids() -> None:
    record = copy.deepcopy(ALIBABA_SEED[0])
    second = {**record["orderDetailInfoVOS"][0], "id": "1232742281220457080", "status": 2}
    record["orderDetailInfoVOS"].append(second)
    assert [line.line_id for line in spec._alibaba_order(record).lines] == ["1232742281220457079", "1232742281220457080"]
    assert spec._alibaba_order(record).lines[1].raw_status == "waitsellersend"
    del record["orderDetailInfoVOS"][1]["subTbOrderId"]
    assert [line.line_id for line in spec._alibaba_order(record).lines] == ["1232742281220457079", "1232742281220457080"]
    record["orderDetailInfoVOS"][1]["subTbOrderId"] = "2542285634920880795"
    assert [line.line_id for line in spec._alibaba_order(record).lines] == [ALIBABA, "2542285634920880795"]


# --- the Taobao purchase record, field by field ------------------------------------------------
def taobao_listed(**result: Any) -> dict[str, Any]:
    """000's record as the list serves it (the sub-order result a JSON string), with changes to the result."""
    r = copy.deepcopy(TAOBAO_SEED[0])
    r["subOrderVOS"][0]["subOrderResult"] = json.dumps({**r["subOrderVOS"][0]["subOrderResult"], **result}, ensure_ascii=False)
    return r


def test_a_listed_taobao_purchase_maps_with_its_fee_and_quantity() -> None:
    snap = spec._taobao_order(taobao_listed(quantity=3, purchase_amount=8970, domestic_post_fee=455), {})
    assert (snap.product_amount, snap.shipping_fee, snap.total_amount, snap.discount, snap.currency) == (8970, 455, 6330, 3095, "CNY")
    [line] = snap.lines
    assert (line.quantity, line.price, line.amount, line.product_id, line.title, line.raw_status) == (
        3, 2990, 8970, "4096193650344292", "1363 儿童冬季加绒保暖波浪连裤袜 NM52", "WAIT_BUYER_P")


def test_a_taobao_sub_order_not_yet_placed_reads_its_create_result_and_estimate() -> None:
    r = copy.deepcopy(TAOBAO_SEED[0])
    sub = r["subOrderVOS"][0]
    result = {k: v for k, v in sub.pop("subOrderResult").items() if k not in ("purchase_amount",)}
    sub["createSubOrderResult"] = json.dumps({**result, "estimate_amount": 5990, "quantity": 2})
    [line] = spec._taobao_order(r, {}).lines
    assert (line.amount, line.price, line.quantity, line.sku_id) == (5990, 2995, 2, "23179458212196")


@pytest.mark.parametrize(("quantity", "price"), [(0, 5980), (None, 5980), (4, 1495)])
def test_a_taobao_line_without_a_quantity_counts_one(quantity: Any, price: int) -> None:
    [line] = spec._taobao_order(taobao_listed(quantity=quantity), {}).lines
    assert (line.quantity, line.price) == (quantity or 1, price)


@pytest.mark.parametrize(("result", "message"), [({"quantity": "2.5"}, "quantity is not an integer: '2.5'"),
                                                 ({"purchase_amount": "59.80"}, "purchase_amount is not an integer: '59.80'"),
                                                 ({"domestic_post_fee": "3.5"}, "domestic_post_fee is not an integer: '3.5'")])
def test_an_unreadable_taobao_result_field_is_refused_naming_it(result: dict[str, Any], message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        spec._taobao_order(taobao_listed(**result), {})
    assert err.value.message == message


@pytest.mark.parametrize(("field", "value", "message"), [("status", "5x", "status is not an integer: '5x'"),
                                                         ("purchaseAmount", 63.3, "purchaseAmount is not an integer: 63.3"),
                                                         ("purchaseId", None, "Taobao purchase record has no purchaseId")])
def test_an_unreadable_taobao_record_field_is_refused_naming_it(field: str, value: Any, message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        spec._taobao_order(taobao_record(**{field: value}), {})
    assert err.value.message == message


def refund_case(fee: int, status: int = 100, line: str = "200058578339") -> dict[str, Any]:
    return {"refundOrder": {"refundFee": fee, "refundStatus": status}, "purchaseOrderLine": {"purchaseOrderLineId": line}}


def with_refund(refund_status: int = 100, refund_id: str | None = "RF88") -> dict[str, Any]:
    r = taobao_listed()
    r["subOrderVOS"][0].update(refundStatus=refund_status, refundId=refund_id)
    return r


@pytest.mark.parametrize(
    ("record", "refunds", "refund"),
    [
        (with_refund(), {"RF88": refund_case(1295)}, 1295),  # by its refund id
        (with_refund(), {"RF88": refund_case(1295, line="")}, 1295),  # by its refund id alone
        (with_refund(), {"RF88": refund_case(1295, status=20)}, 0),  # a case not yet refunded
        (with_refund(refund_id=None), {"RF99": refund_case(1295)}, 1295),  # not linked yet: by its purchase line
        (with_refund(refund_id=None), {"RF99": refund_case(1295, line="200058578340")}, 5980),  # another line's case
        (with_refund(refund_status=100, refund_id=None), {}, 5980),  # no case known: refunded in full per the list
        (with_refund(refund_status=20, refund_id=None), {}, 0),
        (with_refund(refund_status=100), {"RF77": refund_case(700, line="")}, 5980),
    ],
    ids=["by refund id", "by refund id alone", "case not refunded", "by purchase line", "other line", "list refunded", "list not refunded", "case with no line"],
)
def test_a_taobao_line_refund(record: dict[str, Any], refunds: dict[str, Any], refund: int) -> None:
    snap = spec._taobao_order(record, refunds)
    assert (snap.lines[0].refund_amount, snap.refund_amount) == (refund, refund)


def test_a_refund_case_with_an_unreadable_status_is_refused_naming_it() -> None:
    with pytest.raises(PermanentProviderError) as err:
        spec._taobao_order(with_refund(), {"RF88": refund_case(1295, status="done")})  # type: ignore[arg-type]
    assert err.value.message == "refundStatus is not an integer: 'done'"


def test_a_refund_case_with_an_unreadable_fee_is_refused_naming_it() -> None:
    case = refund_case(0)
    case["refundOrder"]["refundFee"] = "12.95"
    with pytest.raises(PermanentProviderError) as err:
        spec._taobao_order(with_refund(), {"RF88": case})
    assert err.value.message == "refundFee is not an integer: '12.95'"


@pytest.mark.parametrize(("value", "parsed"), [({"a": 1}, {"a": 1}), ('{"a": 1}', {"a": 1}), ("[1]", {}), ("{bad", {}), (None, {}), (7, {})])
def test_json_field(value: Any, parsed: dict[str, Any]) -> None:
    assert spec._json_field(value) == parsed


def test_ids_of_exactly_64_characters_are_ids() -> None:
    for body, platform in (({"orderId": "1" * 64}, 1), ({"salesOrderId": "2" * 64}, 0)):
        assert FAMILY.parse_push(source(), raw(envelope(body=body, platform=platform))).order is not None


def test_a_taobao_body_with_no_sub_orders_names_its_sales_order() -> None:
    body = {"salesOrderId": "1192794693444829414", "purchaseOrderPriceDTO": {"purchaseTotalFee": 6330}}
    assert spec.body_ids("taobao", "taobao", body) == {"orderNo": "1192794693444829414"}


def test_integer_timestamps_tell_messages_apart() -> None:
    one, two = (FAMILY.parse_push(source(), raw(envelope(timestamp=t))) for t in (1779263269913, 1779263269914))
    assert one.dedupe_key != two.dedupe_key


def test_a_taobao_line_unreadable_refund_status_is_named() -> None:
    record = with_refund(refund_id=None)
    record["subOrderVOS"][0]["refundStatus"] = "done"
    with pytest.raises(PermanentProviderError) as err:
        spec._taobao_order(record, {})
    assert err.value.message == "refundStatus is not an integer: 'done'"


def test_a_taobao_unit_price_is_whole_fen() -> None:
    snap = spec._taobao_order(taobao_listed(quantity=3, purchase_amount=8971), {})
    assert (snap.platform, snap.lines[0].price, type(snap.lines[0].price)) == ("taobao", 2990, int)


@pytest.mark.parametrize(
    ("answer", "message"),
    [(ok({"total": 1, "data": [], "code": 1001, "msg": "参数错误"}), "provider code 1001: 参数错误"),
     ({"code": 1002, "msg": "签名错误"}, "provider code 1002: 签名错误"),
     (page([], "x"), "total is not an integer: 'x'"),  # type: ignore[arg-type]
     ({"code": 200, "data": {"data": {"tbOrderId": ALIBABA}}}, "answer data is not a list of orders")],
)
def test_a_page_that_cannot_be_read_says_why(answer: Any, message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.ping(Recorder(answer), source())  # type: ignore[arg-type]
    assert err.value.message == message


def test_a_list_without_a_total_keeps_asking_for_its_first_page_size() -> None:
    http = Recorder(page([alibaba_record(n) for n in range(50)]), page([alibaba_record(1)] * 3), page([]))
    list(spec._pages(http, source(), "/alibaba/order/page", {}))  # type: ignore[arg-type]
    assert [(c["json"]["pageNum"], c["json"]["pageSize"]) for c in http.calls] == [(1, 50), (2, 50), (3, 50)]


class Routed(Recorder):
    """Answers by path: the purchase list, the 1688 list and each refund query."""

    def __init__(self, routes: dict[str, Any]) -> None:
        super().__init__(None)
        self.routes = routes

    def _answer(self, method: str, url: str, json: Any = None, params: Any = None, headers: Any = None, timeout: Any = None,
                allow_redirects: Any = None) -> Any:
        self.calls.append({"method": method, "url": url, "json": json, "params": params, "timeout": timeout})
        key = "/".join(url.split("/")[-2:]) + (f"?{params['refundId']}" if params else "")
        answer = self.routes[key]
        return type("Resp", (), {"status_code": 200, "json": lambda _: copy.deepcopy(answer), "text": ""})()


def test_refund_queries_go_on_past_a_failing_one_and_read_odd_answers_as_no_case(caplog: pytest.LogCaptureFixture) -> None:
    record = taobao_listed()
    record["subOrderVOS"].append({**copy.deepcopy(record["subOrderVOS"][0]), "id": "1192794699010671092", "refundId": "RF2"})
    record["subOrderVOS"].append({**copy.deepcopy(record["subOrderVOS"][0]), "id": "1192794699010671093", "refundId": "RF3"})
    record["subOrderVOS"][0]["refundId"] = "RF1"
    http = Routed({"purchase/page": page([record], 1), "refund/query?RF1": {"code": 404, "msg": "开发中"}, "refund/query?RF2": ok(None),
                   "refund/query?RF3": ok({})})
    [snap] = FAMILY.fetch_orders(http, source(), OrderRef("taobao", TAOBAO, {"purchaseId": TAOBAO}))  # type: ignore[arg-type]
    assert [c["params"] for c in http.calls if c["method"] == "GET"] == [{"refundId": "RF1"}, {"refundId": "RF2"}, {"refundId": "RF3"}]
    assert {c["timeout"] for c in http.calls} == {3.5}
    assert [line.refund_amount for line in snap.lines] == [0, 0, 0]
    assert "refetch.refund_query_failed source=unit refund=RF1 error=provider code 404: 开发中" in [r.getMessage() for r in caplog.records]


def test_reconciliation_asks_for_the_refunds_of_the_listed_purchases() -> None:
    from datetime import datetime, timezone

    record = taobao_listed()
    record["subOrderVOS"][0]["refundId"] = "RF1"
    http = Routed({"order/page": page([], 0), "purchase/page": page([record], 1), "refund/query?RF1": ok({"refundOrderAggregate": refund_case(1295)})})
    pages = list(FAMILY.list_orders(http, source(), datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)))  # type: ignore[arg-type]
    taobao = [s for p in pages for s in p if s.platform == "taobao"]
    assert taobao[0].refund_amount == 1295
