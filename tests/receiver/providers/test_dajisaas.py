"""The DajiSaaS family on its own: the API's `sign`, buyerView, list paging, error scrubbing, the
`_dj_signature` candidates, and 1688 and Taobao/Tmall messages."""
from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from marshmallow import ValidationError

from receiver.config import Source
from receiver.errors import BadSignature, MalformedPush, PermanentProviderError, TransientProviderError
from receiver.providers import OrderRef, RawPush, family_for
from receiver.providers import dajisaas as spec
from receiver.sandbox.dajisaas import SEED

pytestmark = pytest.mark.unit  # fast: no Redis, no worker, no server

SECRET = "daji-secret-unit"
SOURCE = Source(
    name="daji",
    family="dajisaas",
    base_url="https://openapi.example",
    callback_token="cb-token-unit-0123456789",
    credentials={"app_key": "ak-unit", "app_secret": SECRET, "signature_scheme": "any", "send_app_secret": False},
)
ORDER_ID = SEED[0]["baseInfo"]["idOfStr"]
DOC_ORDER = "2257164624870311973"
FAMILY = family_for("dajisaas")
# The 1688 buyer-view topics PUBLISHED-DOCS 2a lists, and FACTS.md's two more, with their kinds (both
# in shared/provider-docs, outside this repository).
DOC_TOPICS = {
    "ORDER_BUYER_VIEW_BUYER_MAKE": "status",
    "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY": "price",
    "ORDER_BUYER_VIEW_ORDER_PAY": "status",
    "ORDER_BATCH_PAY": "status",
    "ORDER_BUYER_VIEW_ORDER_STEP_PAY": "status",
    "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS": "status",
    "ORDER_BUYER_VIEW_PART_PART_SENDGOODS": "status",
    "ORDER_BUYER_VIEW_ORDER_COMFIRM_RECEIVEGOODS": "status",
    "ORDER_BUYER_VIEW_ORDER_SUCCESS": "status",
    "ORDER_BUYER_VIEW_ORDER_BUYER_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_SELLER_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_BOPS_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES": "refund",
    "ORDER_BUYER_VIEW_ORDER_REFUND_AFTER_SALES": "refund",
    "ORDER_BUYER_VIEW_MODIFY_MEMO": "other",
    "ORDER_BUYER_VIEW_ORDER_SELLER_MODIFY_ADRESS": "other",
    "LOGISTICS_BUYER_VIEW_TRACE": "logistics",
    "LOGISTICS_MAIL_NO_CHANGE": "logistics",
}


def form(fields: dict[str, str], content_type: str = "application/x-www-form-urlencoded; charset=UTF-8") -> RawPush:
    return RawPush(headers={}, body=urlencode(fields).encode(), content_type=content_type)


def message(type_: str = "ORDER_BUYER_VIEW_ORDER_PAY", msg_id: Any = 123456789, **data: Any) -> str:
    data = data or {"orderId": int(ORDER_ID), "currentStatus": "waitsellersend"}
    return json.dumps({"msgId": msg_id, "gmtBorn": 1758000000000, "type": type_, "userInfo": "b2b-1", "data": data})


def hand_signature(text: str, scheme: str = "name-value-hex-upper", secret: str = SECRET) -> str:
    """`_dj_signature` computed here, by hand, for each candidate of PUBLISHED-DOCS 2b."""
    signed_text = ("message" + text) if scheme.startswith("name-value") else text
    digest = hmac.new(secret.encode(), signed_text.encode(), hashlib.sha1).digest()
    if scheme.endswith("base64"):
        return base64.b64encode(digest).decode()
    return digest.hex().upper() if scheme.endswith("upper") else digest.hex()


def signed(text: str, signature: str | None = None) -> RawPush:
    return form({"message": text, "_dj_signature": hand_signature(text) if signature is None else signature})


# --- the API's sign -----------------------------------------------------------------------------
def test_sign_is_upper_md5_of_sorted_pairs_then_the_secret() -> None:
    params = {"webSite": "1688", "orderId": DOC_ORDER, "appKey": "ak-unit", "requestTime": 1758000000000,
              "outOrderId": None, "page": 2}
    text = f"appKey=ak-unit&orderId={DOC_ORDER}&page=2&requestTime=1758000000000&webSite=1688&secret={SECRET}"
    expected = hashlib.md5(text.encode()).hexdigest().upper()
    assert spec.api_sign(params, SECRET) == expected
    assert spec.api_sign({**params, "sign": "OLD", "appSecret": SECRET}, SECRET) == expected  # neither is signed


def test_a_request_body_carries_sign_and_request_time_but_no_secret() -> None:
    body = spec.signed_body(SOURCE, {"webSite": "1688", "orderId": DOC_ORDER}, now_ms=1758000000123)
    text = f"appKey=ak-unit&orderId={DOC_ORDER}&requestTime=1758000000123&webSite=1688&secret={SECRET}"
    assert body == {"appKey": "ak-unit", "webSite": "1688", "orderId": DOC_ORDER, "requestTime": 1758000000123,
                    "sign": hashlib.md5(text.encode()).hexdigest().upper()}
    assert SECRET not in json.dumps(body)


def test_request_time_is_in_milliseconds() -> None:
    body = spec.signed_body(SOURCE, {})
    assert abs(body["requestTime"] - time.time() * 1000) < 60_000


def test_a_debug_source_also_sends_app_secret() -> None:
    debug = dataclasses.replace(SOURCE, credentials={**SOURCE.credentials, "send_app_secret": True})
    plain = spec.signed_body(SOURCE, {"page": 1}, now_ms=1)
    assert spec.signed_body(debug, {"page": 1}, now_ms=1) == {**plain, "appSecret": SECRET}


# --- re-fetching one order: buyerView ------------------------------------------------------------
class _Answer:
    def __init__(self, payload: Any, status: int = 200) -> None:
        self.status_code, self.payload, self.text = status, payload, json.dumps(payload, ensure_ascii=False)

    def json(self) -> Any:
        return self.payload


class _Http:
    """A requests.Session stand-in that answers POSTs from a list (the last one again) and keeps the requests."""

    def __init__(self, *payloads: Any, status: int = 200) -> None:
        self.payloads, self.status, self.requests = list(payloads), status, []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any, **kwargs: Any) -> _Answer:
        self.requests.append((url, json))
        payload = self.payloads.pop(0) if len(self.payloads) > 1 else self.payloads[0]
        return _Answer(payload(json) if callable(payload) else payload, self.status)


def _view(record: Any, code: int = 200, message: str = "操作成功") -> dict[str, Any]:
    return {"code": code, "message": message, "data": record, "timestamp": 1758000000000, "traceId": "c805230410e"}


def doc_record(**base: Any) -> dict[str, Any]:
    """The buyerView doc's order: the numeric ids as a double rounded them, the string ids exact."""
    record = copy.deepcopy(SEED[1])
    record["baseInfo"].update({"id": 2257164624870312000, **base})
    record["productItems"][0]["subItemID"] = 2257164624870312000
    return record


def test_fetch_asks_buyer_view_for_the_order_signed() -> None:
    http = _Http(_view(doc_record()))
    (snap,) = FAMILY.fetch_orders(http, SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]
    ((url, payload),) = http.requests
    assert url == "https://openapi.example/alibaba/trade/get/buyerView"
    assert set(payload) == {"appKey", "webSite", "orderId", "requestTime", "sign"}
    assert (payload["appKey"], payload["webSite"], payload["orderId"]) == ("ak-unit", "1688", DOC_ORDER)
    text = f"appKey=ak-unit&orderId={DOC_ORDER}&requestTime={payload['requestTime']}&webSite=1688&secret={SECRET}"
    assert payload["sign"] == hashlib.md5(text.encode()).hexdigest().upper()
    assert snap.provider_order_id == DOC_ORDER
    assert [line.line_id for line in snap.lines][0] == "2257164624870311974"
    assert snap.lines[1].line_id.startswith("derived-")  # the line without ids is kept
    assert (snap.total_amount, snap.shipping_fee, snap.lines[0].amount, snap.lines[1].price) == (1126, 115, 896, 23)


def test_an_answer_without_the_string_id_is_matched_through_the_double() -> None:
    record = doc_record(idOfStr=None)
    (snap,) = FAMILY.fetch_orders(_Http(_view(record)), SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]
    assert snap.provider_order_id == DOC_ORDER


@pytest.mark.parametrize("base", [{"idOfStr": "2257164624870311999"}, {"idOfStr": None, "id": 1}])
def test_an_answer_about_another_order_is_refused(base: dict[str, Any]) -> None:
    with pytest.raises(PermanentProviderError, match="answered"):
        FAMILY.fetch_orders(_Http(_view(doc_record(**base))), SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]


def test_a_taobao_order_is_never_asked_for() -> None:
    http = _Http(_view(None))
    with pytest.raises(PermanentProviderError, match="no Taobao order query"):
        FAMILY.fetch_orders(http, SOURCE, OrderRef("taobao", "200002638011"))  # type: ignore[arg-type]
    assert http.requests == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (_view(None, code=500, message="system busy"), TransientProviderError),
        (_view(None, code=429, message="too many requests"), TransientProviderError),
        (_view(None, code=401, message="appKey错误"), PermanentProviderError),
        (_view(None, code=402, message="签名错误"), PermanentProviderError),
        (_view(None), PermanentProviderError),  # not found
        (_view({"errorCode": "ORDER_NOT_EXIST", "errorMessage": "no order"}), PermanentProviderError),
        ({"message": "no code"}, PermanentProviderError),
    ],
)
def test_fetch_errors_are_sorted(payload: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        FAMILY.fetch_orders(_Http(payload), SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]


# --- provider error text: no secret, bounded ---------------------------------------------------------
ODD_SECRET = "s3cr/t+key=é&x"
ODD_SOURCE = dataclasses.replace(SOURCE, credentials={**SOURCE.credentials, "app_secret": ODD_SECRET})


@pytest.mark.parametrize(
    ("echo", "status"),
    [
        (f"appSecret {ODD_SECRET} is wrong", 200),
        (f"bad request: appSecret={quote(ODD_SECRET, safe='')}", 200),
        ('{"appSecret": ' + json.dumps(ODD_SECRET) + "}", 200),
        (f"appSecret {ODD_SECRET} is wrong", 403),  # in an HTTP error's body
    ],
)
def test_an_echoed_secret_never_reaches_the_error(echo: str, status: int) -> None:
    http = _Http(_view(None, code=401, message=echo), status=status)
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(http, ODD_SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]
    text = err.value.message
    assert ODD_SECRET not in text and quote(ODD_SECRET, safe="") not in text and "s3cr" not in text
    assert "***" in text


def test_a_long_provider_message_is_capped() -> None:
    http = _Http(_view(None, code=500, message="x" * 5000))
    with pytest.raises(TransientProviderError) as err:
        FAMILY.fetch_orders(http, SOURCE, OrderRef("1688", DOC_ORDER))  # type: ignore[arg-type]
    assert len(err.value.message) <= spec.MAX_ERROR_TEXT and err.value.message.startswith("provider code 500: xxx")


# --- the order list: reconciliation and ping ---------------------------------------------------------
def _lister(records: list[dict[str, Any]], cap: int, total: bool = True):  # type: ignore[no-untyped-def]
    """A list answer as a server with a page-size cap gives it."""
    def answer(query: dict[str, Any]) -> dict[str, Any]:
        size = min(query["pageSize"], cap)
        page = records[(query["page"] - 1) * size : query["page"] * size]
        data: dict[str, Any] = {"result": page, "errorCode": None, "errorMessage": None}
        if total:
            data["totalRecord"] = len(records)
        return _view(data)
    return answer


def _orders(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r = copy.deepcopy(SEED[0])
        r["baseInfo"].update(id=1000 + i, idOfStr=str(1000 + i))
        out.append(r)
    return out


@pytest.mark.parametrize("total", [True, False])
def test_list_pages_follow_total_record_under_a_page_size_cap(total: bool) -> None:
    http = _Http(_lister(_orders(5), cap=2, total=total))
    since, until = datetime(2025, 9, 1, tzinfo=timezone.utc), datetime(2025, 9, 2, 12, 30, tzinfo=timezone.utc)
    pages = list(FAMILY.list_orders(http, SOURCE, since, until))  # type: ignore[arg-type]
    assert [[s.provider_order_id for s in p] for p in pages] == [["1000", "1001"], ["1002", "1003"], ["1004"]]
    asked = [q for _, q in http.requests]
    assert [q["page"] for q in asked] == ([1, 2, 3] if total else [1, 2, 3, 4])
    first = asked[0]
    assert (first["createStartTime"], first["createEndTime"]) == ("20250901080000000+0800", "20250902203000000+0800")
    assert "orderId" not in first and "sign" in first and "appSecret" not in first


def test_an_unreadable_order_does_not_cost_the_page() -> None:
    records = _orders(3)
    records[1]["baseInfo"].update(id=None, idOfStr=None)
    records[2]["baseInfo"]["totalAmount"] = "n/a"
    http = _Http(_lister(records, cap=20))
    (page,) = FAMILY.list_orders(http, SOURCE, datetime(2025, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))  # type: ignore[arg-type]
    assert [(s.provider_order_id, s.total_amount) for s in page] == [("1000", 4730), ("1002", 0)]


def test_ping_reads_one_record_signed() -> None:
    http = _Http(_lister(_orders(3), cap=20))
    assert "3 order(s)" in FAMILY.ping(http, SOURCE)  # type: ignore[arg-type]
    ((url, query),) = http.requests
    assert url.endswith("/alibaba/trade/getBuyerOrderList") and (query["page"], query["pageSize"]) == (1, 1)


# --- _dj_signature ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", list(spec.SIGNATURE_SCHEMES))
def test_every_candidate_scheme_is_accepted_and_named_once(
    scheme: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spec, "_reported", set())  # once per process: a run that saw this push before must not hide it
    caplog.set_level(logging.INFO, "receiver.providers.dajisaas")
    source = dataclasses.replace(SOURCE, name=f"daji-{scheme}")
    for msg_id in (1, 2):
        text = message(msg_id=msg_id)
        assert FAMILY.authenticate(source, signed(text, hand_signature(text, scheme))).timestamp_ms is None
    named = [r.getMessage() for r in caplog.records if "callback.signature_scheme" in r.getMessage()]
    assert named == [f"callback.signature_scheme source=daji-{scheme} scheme={scheme}"]


@pytest.mark.parametrize("scheme", list(spec.SIGNATURE_SCHEMES))
def test_a_pinned_scheme_refuses_the_others(scheme: str) -> None:
    source = dataclasses.replace(SOURCE, name=f"pinned-{scheme}", credentials={**SOURCE.credentials, "signature_scheme": scheme})
    text = message()
    assert FAMILY.authenticate(source, signed(text, hand_signature(text, scheme)))
    for other in spec.SIGNATURE_SCHEMES:
        if hand_signature(text, other) != hand_signature(text, scheme):
            with pytest.raises(BadSignature):
                FAMILY.authenticate(source, signed(text, hand_signature(text, other)))


def test_a_base64_signature_whose_plus_was_not_encoded_still_verifies() -> None:
    text = next(t for i in range(200) if "+" in hand_signature(t := message(msg_id=i), "value-base64"))
    body = urlencode({"message": text}) + "&_dj_signature=" + hand_signature(text, "value-base64")  # "+" left raw
    raw = RawPush(headers={}, body=body.encode(), content_type="application/x-www-form-urlencoded")
    assert FAMILY.authenticate(dataclasses.replace(SOURCE, name="daji-raw-plus"), raw)


@pytest.mark.parametrize(
    "signature",
    [
        *(hand_signature(message(), s, secret="another-secret") for s in spec.SIGNATURE_SCHEMES),
        *(hand_signature(message() + " ", s) for s in spec.SIGNATURE_SCHEMES),
        hashlib.sha1(message().encode()).hexdigest().upper(),  # no key at all
        hmac.new(SECRET.encode(), message().encode(), hashlib.sha256).hexdigest().upper(),  # not SHA-1
        "",
        "zz",
    ],
)
def test_wrong_or_missing_signature_is_refused(signature: str) -> None:
    with pytest.raises(BadSignature):
        FAMILY.authenticate(SOURCE, signed(message(), signature))


def test_a_form_without_message_is_malformed() -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.authenticate(SOURCE, form({"_dj_signature": "ABC"}))
    assert err.value.field == "message"


def test_a_json_post_is_malformed() -> None:
    text = message()
    with pytest.raises(MalformedPush) as err:
        FAMILY.authenticate(SOURCE, RawPush(headers={}, body=text.encode(), content_type="application/json"))
    assert err.value.field == "body"


def test_a_repeated_message_field_is_malformed() -> None:
    text = message()
    raw = RawPush(headers={}, body=urlencode([("message", text), ("message", text)]).encode(),
                  content_type="application/x-www-form-urlencoded")
    with pytest.raises(MalformedPush):
        FAMILY.authenticate(SOURCE, raw)


# --- 1688 trade messages -----------------------------------------------------------------------------
@pytest.mark.parametrize(("type_", "kind"), list(DOC_TOPICS.items()))
def test_every_documented_topic_is_mapped_and_refetched(type_: str, kind: str) -> None:
    push = FAMILY.parse_push(SOURCE, signed(message(type_)))
    assert (push.message_type, push.kind, push.actionable, push.ignored) == (type_, kind, True, None)
    assert (push.order.platform, push.order.order_id) == ("1688", ORDER_ID)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("LOGISTICS_BUYER_VIEW_TRACE", {"OrderLogisticsTracingModel": {"mailNo": "YT1", "orderLogsItems": [{"orderId": int(ORDER_ID)}]}}),
        ("LOGISTICS_MAIL_NO_CHANGE", {"MailNoChangeModel": {"orderLogsItems": [{"orderId": ORDER_ID}]}}),
        ("ORDER_BATCH_PAY", {"batchPay": [{"orderId": int(ORDER_ID), "status": "success"}, {"orderId": 1}]}),
    ],
)
def test_messages_that_list_their_orders_name_the_first(type_: str, data: dict[str, Any]) -> None:
    push = FAMILY.parse_push(SOURCE, signed(message(type_, **data)))
    assert push.actionable and push.order.order_id == ORDER_ID  # type: ignore[union-attr]


def test_an_unlisted_type_that_names_an_order_is_refetched() -> None:
    push = FAMILY.parse_push(SOURCE, signed(message("ORDER_BUYER_VIEW_SOMETHING_NEW", orderId=ORDER_ID)))
    assert (push.kind, push.actionable, push.order.order_id) == ("other", True, ORDER_ID)  # type: ignore[union-attr]


def test_an_unlisted_type_without_an_order_is_kept_as_ignored() -> None:
    push = FAMILY.parse_push(SOURCE, signed(message("PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE", productIds="1")))
    assert (push.kind, push.actionable, push.order) == ("other", False, None)
    assert push.ignored == "message type PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE names no order"


@pytest.mark.parametrize("data", [{"currentStatus": "waitsellersend"}, {"orderId": True}])
def test_a_listed_topic_without_a_readable_order_is_kept_as_ignored(data: dict[str, Any]) -> None:
    # The trade-message page was not readable: a layout we do not know is kept, not refused for ever.
    push = FAMILY.parse_push(SOURCE, signed(message(**data)))
    assert (push.actionable, push.ignored) == (False, "message type ORDER_BUYER_VIEW_ORDER_PAY names no order")


@pytest.mark.parametrize("data", [{"orderId": "9" * 65}, {"orderId": "12\x0034"}, {"orderId": "12\ud80034"}])
def test_a_trade_message_with_an_unusable_order_id_is_malformed(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(SOURCE, signed(message(**data)))
    assert err.value.field == "message.data.orderId"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("not json", "message"),
        ("[1]", "message"),
        ('{"type": "X"}', "message.msgId"),
        ('{"msgId": 1}', "message.type"),
        ('{"message_type": "3", "data": {}}', "message.message_type"),
        ('{"message_type": 3, "data": []}', "message.data"),
    ],
)
def test_unreadable_messages_name_the_field(text: str, field: str) -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(SOURCE, signed(text))
    assert err.value.field == field


def test_the_dedupe_key_is_the_message_id_per_source() -> None:
    first = FAMILY.parse_push(SOURCE, signed(message(msg_id=42)))
    again = FAMILY.parse_push(SOURCE, signed(message(msg_id="42", orderId=int(ORDER_ID), currentStatus="success")))
    other = FAMILY.parse_push(SOURCE, signed(message(msg_id=43)))
    elsewhere = FAMILY.parse_push(dataclasses.replace(SOURCE, name="daji2"), signed(message(msg_id=42)))
    assert first.dedupe_key == again.dedupe_key
    assert len({first.dedupe_key, other.dedupe_key, elsewhere.dedupe_key}) == 3


# --- Taobao/Tmall messages (wiki-en.dajisaas.com/doc-4966230) ----------------------------------------
TAOBAO_STATUS = {
    "seller_id": "2100000927014", "message_type": 3, "timestamp": 1650939687, "site": "taobao_hk",
    "data": {"business_time": 1650939687564, "outer_purchase_id": "FY20220426002", "purchase_id": 200002638011,
             "seller_id": "2100000927014", "status": "WAIT_SELLER_SEND_GOODS",
             "sku_list": [{"item_id": 1, "sku_id": 2, "order_line_no": 1, "status": "WAIT_SELLER_SEND_GOODS"}]},
}
TAOBAO_PRICE = {
    "seller_id": "2100000927014", "message_type": 8, "timestamp": 1650939690, "site": "taobao_hk",
    "data": {"features": "", "salesOrderId": "500000-GSP2021031415594", "salesSellerId": "2100000927014",
             "purchaseMarket": "TAOBAO", "purchaseOrderId": 200002372069,
             "purchaseOrderPriceDTO": {"purchaseCurrency": "CNY", "purchaseTotalFee": "1000"},
             "purchaseOrderLinePriceChangeMessageDTOList": []},
}


@pytest.mark.parametrize(
    ("msg", "name", "kind", "purchase_id", "kept"),
    [
        (TAOBAO_STATUS, "TAOBAO_ORDER_STATUS_UPDATE", "status", "200002638011",
         {"outer_purchase_id": "FY20220426002", "status": "WAIT_SELLER_SEND_GOODS", "site": "taobao_hk"}),
        (TAOBAO_PRICE, "TAOBAO_PRICE_CHANGE", "price", "200002372069",
         {"salesOrderId": "500000-GSP2021031415594", "site": "taobao_hk"}),
        ({**TAOBAO_STATUS, "message_type": 5}, "TAOBAO_MESSAGE_5", "other", "200002638011",
         {"outer_purchase_id": "FY20220426002", "status": "WAIT_SELLER_SEND_GOODS", "site": "taobao_hk"}),
    ],
)
def test_taobao_messages_are_kept_with_their_purchase_id_and_ignored(
    msg: dict[str, Any], name: str, kind: str, purchase_id: str, kept: dict[str, str]
) -> None:
    push = FAMILY.parse_push(SOURCE, signed(json.dumps(msg)))
    assert (push.message_type, push.kind, push.actionable) == (name, kind, False)
    assert push.order == OrderRef("taobao", purchase_id, kept)
    assert push.ignored == "Taobao/Tmall message: DajiSaaS documents no Taobao order query"


def test_a_taobao_message_without_a_purchase_id_is_still_kept() -> None:
    msg = copy.deepcopy(TAOBAO_STATUS)
    del msg["data"]["purchase_id"]
    push = FAMILY.parse_push(SOURCE, signed(json.dumps(msg)))
    assert (push.order, push.actionable, push.ignored) == (None, False, spec.TAOBAO_IGNORED)


def test_a_taobao_redelivery_has_the_same_dedupe_key_and_a_new_message_another() -> None:
    first = FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_STATUS)))
    again = FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_STATUS, indent=1)))
    moved = copy.deepcopy(TAOBAO_STATUS)
    moved["data"].update(status="WAIT_BUYER_CONFIRM_GOODS", business_time=1650939999000)
    later = FAMILY.parse_push(SOURCE, signed(json.dumps(moved)))
    price = FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_PRICE)))
    assert first.dedupe_key == again.dedupe_key
    assert len({first.dedupe_key, later.dedupe_key, price.dedupe_key}) == 3


def test_a_taobao_message_to_another_source_is_another_event() -> None:
    here = FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_STATUS)))
    elsewhere = FAMILY.parse_push(dataclasses.replace(SOURCE, name="daji2"), signed(json.dumps(TAOBAO_STATUS)))
    assert here.dedupe_key != elsewhere.dedupe_key


@pytest.mark.parametrize(
    "change",
    [lambda m: m.update(seller_id="2100000927015"), lambda m: m.update(message_type=8), lambda m: m.update(timestamp=1650939688),
     lambda m: m["data"].update(business_time=1650939687565), lambda m: m["data"].update(status="TRADE_CLOSED"),
     lambda m: m["data"].update(purchase_id=200002638012)],
    ids=["seller_id", "message_type", "timestamp", "data.business_time", "data.status", "data.purchase_id"],
)
def test_each_field_that_tells_taobao_messages_apart_changes_the_dedupe_key(change: Any) -> None:
    msg = copy.deepcopy(TAOBAO_STATUS)
    change(msg)
    assert FAMILY.parse_push(SOURCE, signed(json.dumps(msg))).dedupe_key != FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_STATUS))).dedupe_key


def test_a_taobao_field_outside_the_dedupe_fields_leaves_the_key() -> None:
    msg = copy.deepcopy(TAOBAO_STATUS)
    msg["data"]["outer_purchase_id"] = "FY20220426003"
    msg["site"] = "taobao_cn"
    assert FAMILY.parse_push(SOURCE, signed(json.dumps(msg))).dedupe_key == FAMILY.parse_push(SOURCE, signed(json.dumps(TAOBAO_STATUS))).dedupe_key


# --- per-source options ------------------------------------------------------------------------------
def test_credentials_schema_defaults_and_refusals() -> None:
    schema = FAMILY.credentials_schema()
    assert schema.load({"app_key": "k", "app_secret": "s"}) == {
        "app_key": "k", "app_secret": "s", "signature_scheme": "any", "send_app_secret": False
    }
    assert schema.load({"app_key": "k", "app_secret": "s", "signature_scheme": "value-base64", "send_app_secret": True})
    for bad in ({"app_key": "k"}, {"app_key": "k", "app_secret": "s", "access_key": "x"},
                {"app_key": "k", "app_secret": "s", "signature_scheme": "md5"}):
        with pytest.raises(ValidationError):
            schema.load(bad)
