"""The DajiSaaS family's details, each on its own: what a refused push says and names, the form's
rules, Taobao/Tmall messages, the signed calls and their errors (with a recording stand-in)."""
from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest

from receiver.config import Source
from receiver.errors import BadSignature, MalformedPush, PermanentProviderError, TransientProviderError
from receiver.providers import MAX_PAGES, OrderRef, RawPush, family_for
from receiver.providers import dajisaas as spec
from receiver.sandbox.dajisaas import SEED

pytestmark = pytest.mark.unit

FAMILY = family_for("dajisaas")
SECRET = "daji-secret-unit/+="
SOURCE = Source(name="daji", family="dajisaas", base_url="https://openapi.example", callback_token="cb-token-unit-0123456789",
                credentials={"app_key": "ak-unit", "app_secret": SECRET}, timeout=2.5)
ORDER = "2257164624870311973"


@pytest.fixture(autouse=True)
def reported_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemes these tests see are noted apart, not in the process's once-per-source record."""
    monkeypatch.setattr(spec, "_reported", set())


def form(fields: dict[str, str], content_type: str = "application/x-www-form-urlencoded") -> RawPush:
    return RawPush(headers={}, body=urlencode(fields).encode(), content_type=content_type)


def trade(msg_id: Any = 123456789, type_: str = "ORDER_BUYER_VIEW_ORDER_PAY", **data: Any) -> str:
    return json.dumps({"msgId": msg_id, "gmtBorn": 1758000000000, "type": type_, "userInfo": "b2b-1",
                       "data": data or {"orderId": int(ORDER), "currentStatus": "waitsellersend"}})


def hmac_sha1(text: str, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()


# --- `_dj_signature` known answers, computed here ---------------------------------------------------
@pytest.mark.parametrize(
    ("scheme", "encode", "prefix"),
    [("value-hex-upper", lambda d: d.hex().upper(), ""), ("value-hex-lower", lambda d: d.hex(), ""),
     ("value-base64", lambda d: base64.b64encode(d).decode(), ""), ("name-value-hex-upper", lambda d: d.hex().upper(), "message"),
     ("name-value-hex-lower", lambda d: d.hex(), "message"), ("name-value-base64", lambda d: base64.b64encode(d).decode(), "message")],
)
def test_each_signature_scheme_signs_as_named(scheme: str, encode: Any, prefix: str) -> None:
    text = trade()
    assert spec.sign(SECRET, text, scheme) == encode(hmac_sha1(prefix + text))
    assert spec.matching_scheme(SECRET, text, encode(hmac_sha1(prefix + text))) == scheme


def test_the_default_scheme_is_name_value_hex_upper() -> None:
    assert spec.sign(SECRET, "x") == hmac_sha1("messagex").hex().upper()


def test_no_scheme_matches_another_secrets_signature() -> None:
    assert spec.matching_scheme(SECRET, trade(), hmac_sha1("message" + trade(), "other").hex().upper()) is None


# --- the form --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message", "field"),
    [
        (form({"message": trade()}, "application/json"), "body must be application/x-www-form-urlencoded", "body"),
        (form({"message": trade()}, "text/plain; charset=utf-8"), "body must be application/x-www-form-urlencoded", "body"),
        (RawPush({}, b"message=%FF%FE&_dj_signature=x", "application/x-www-form-urlencoded"), "form is not valid UTF-8", "body"),
        (RawPush({}, b"message=a&message=b&_dj_signature=x", "application/x-www-form-urlencoded"),
         "form field message given more than once", "message"),
        (RawPush({}, b"message=&message=b&_dj_signature=x", "application/x-www-form-urlencoded"),
         "form field message given more than once", "message"),
        (form({"_dj_signature": "x"}), "form has no message", "message"),
        (form({"message": "", "_dj_signature": "x"}), "form has no message", "message"),
    ],
    ids=["json", "text", "not utf-8", "message twice", "blank and given", "no message", "blank message"],
)
def test_a_form_that_cannot_be_read_says_why(raw: RawPush, message: str, field: str) -> None:
    for step in (FAMILY.authenticate, FAMILY.parse_push):
        with pytest.raises(MalformedPush) as err:
            step(SOURCE, raw)
        assert (err.value.message, err.value.field) == (message, field)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", " Application/X-WWW-Form-Urlencoded ; charset=UTF-8",
                                          "application/x-www-form-urlencoded; charset=UTF-8; boundary=x"])
def test_the_form_content_type_is_read_as_http_does(content_type: str) -> None:
    text = trade()
    raw = form({"message": text, "_dj_signature": spec.sign(SECRET, text)}, content_type)
    assert FAMILY.authenticate(SOURCE, raw).nonce is None


@pytest.mark.parametrize(("fields", "message"), [({"message": "{}"}, "form has no _dj_signature"),
                                                 ({"message": "{}", "_dj_signature": ""}, "form has no _dj_signature"),
                                                 ({"message": "{}", "_dj_signature": "0" * 40}, "signature does not verify")])
def test_a_refused_signature_says_why(fields: dict[str, str], message: str) -> None:
    with pytest.raises(BadSignature) as err:
        FAMILY.authenticate(SOURCE, form(fields))
    assert err.value.message == message


def test_a_pinned_scheme_is_the_only_one_tried() -> None:
    text = trade()
    pinned = dataclasses.replace(SOURCE, credentials={**SOURCE.credentials, "signature_scheme": "value-base64"})
    assert FAMILY.authenticate(pinned, form({"message": text, "_dj_signature": spec.sign(SECRET, text, "value-base64")})) is not None
    with pytest.raises(BadSignature):
        FAMILY.authenticate(pinned, form({"message": text, "_dj_signature": spec.sign(SECRET, text)}))


# --- 1688 trade messages -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message", "field"),
    [
        ("{bad", "message is not valid JSON", "message"),
        ("[1]", "message must be a JSON object", "message"),
        (json.dumps({"type": "ORDER_BUYER_VIEW_ORDER_PAY", "data": {}}), "msgId: ['Missing data for required field.']", "message.msgId"),
        (json.dumps({"msgId": "", "type": "X"}), "msgId: ['must be a number or a non-empty string of at most 64 characters']", "message.msgId"),
        (json.dumps({"msgId": "1" * 65, "type": "X"}), "msgId: ['must be a number or a non-empty string of at most 64 characters']",
         "message.msgId"),
        (json.dumps({"msgId": "12\x0034", "type": "X"}), "msgId: ['must not contain control characters']", "message.msgId"),
        (trade(orderId="9" * 65), "message orderId is too long or holds a control character", "message.data.orderId"),
        (trade(orderId="22571646\n24870311973"), "message orderId is too long or holds a control character", "message.data.orderId"),
        (json.dumps({"seller_id": "1", "message_type": "3"}), "message_type: ['Not a valid integer.']", "message.message_type"),
        (json.dumps({"message_type": 3, "data": {"purchase_id": "2" * 65}}), "message purchase id is too long or holds a control character",
         "message.data.purchase_id"),
    ],
    ids=["not json", "array", "no msgId", "empty msgId", "long msgId", "msgId NUL", "long orderId", "orderId newline",
         "taobao type as text", "long purchase id"],
)
def test_an_unreadable_message_says_why_and_names_the_field(text: str, message: str, field: str) -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(SOURCE, form({"message": text, "_dj_signature": "x"}))
    assert (err.value.message, err.value.field) == (message, field)


def test_a_trade_message_names_its_order_and_its_kind() -> None:
    push = FAMILY.parse_push(SOURCE, form({"message": trade(type_="ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY")}))
    assert (push.message_type, push.kind, push.order, push.ignored) == (
        "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", OrderRef("1688", ORDER), None)
    assert push.dedupe_key == hashlib.sha256(b"daji|123456789").hexdigest()  # stored keys must not change


def test_a_message_without_data_names_no_order() -> None:
    push = FAMILY.parse_push(SOURCE, form({"message": json.dumps({"msgId": 7, "type": "ORDER_BUYER_VIEW_MODIFY_MEMO", "data": None})}))
    assert (push.order, push.ignored, push.kind) == (None, "message type ORDER_BUYER_VIEW_MODIFY_MEMO names no order", "other")


@pytest.mark.parametrize(
    ("data", "order"),
    [({"orderId": "2257164624870311973", "batchPay": [{"orderId": 1}]}, ORDER), ({"batchPay": [{"orderId": 2257164624870311973}]}, ORDER),
     ({"batchPay": {"orderId": ORDER}}, ORDER), ({"batchPay": []}, None), ({"batchPay": ["x"]}, None),
     ({"OrderLogisticsTracingModel": {"orderLogsItems": [{"orderId": ORDER}, {"orderId": 1}]}}, ORDER),
     ({"MailNoChangeModel": {"orderLogsItems": [{"orderId": ORDER}]}}, ORDER),
     ({"MailNoChangeModel": "x"}, None), ({"OrderLogisticsTracingModel": {"orderLogsItems": [{"id": 1}]}}, None)],
)
def test_message_order_id(data: dict[str, Any], order: str | None) -> None:
    assert spec.message_order_id(data) == order


# --- Taobao/Tmall messages ---------------------------------------------------------------------
TAOBAO = {"seller_id": 2100000927014, "message_type": 3, "timestamp": 1650939687, "site": "taobao_hk",
          "data": {"business_time": 1650939687564, "outer_purchase_id": "FY20220426002", "purchase_id": 200002638011,
                   "salesOrderId": "", "status": "WAIT_SELLER_SEND_GOODS"}}


def test_a_taobao_message_keeps_its_ids_and_is_ignored() -> None:
    push = FAMILY.parse_push(SOURCE, form({"message": json.dumps(TAOBAO)}))
    assert (push.message_type, push.kind) == ("TAOBAO_ORDER_STATUS_UPDATE", "status")
    assert push.order == OrderRef("taobao", "200002638011", {"outer_purchase_id": "FY20220426002", "status": "WAIT_SELLER_SEND_GOODS",
                                                             "site": "taobao_hk"})
    parts = ["daji", "taobao", "200002638011", "2100000927014", "3", "1650939687", "1650939687564", "WAIT_SELLER_SEND_GOODS"]
    assert push.dedupe_key == hashlib.sha256("|".join(parts).encode()).hexdigest()


def test_a_taobao_message_without_site_or_data() -> None:
    msg = {"seller_id": "2100000927014", "message_type": 8, "timestamp": None}
    push = FAMILY.parse_push(SOURCE, form({"message": json.dumps(msg)}))
    assert (push.message_type, push.kind, push.order, push.ignored) == ("TAOBAO_PRICE_CHANGE", "price", None, spec.TAOBAO_IGNORED)


def test_a_taobao_price_change_is_named_by_its_purchase_order_id_and_cuts_long_values() -> None:
    msg = {"message_type": 8, "data": {"purchaseOrderId": 200002372069, "salesOrderId": "S" * 80, "status": 0}}
    push = FAMILY.parse_push(SOURCE, form({"message": json.dumps(msg)}))
    assert push.order == OrderRef("taobao", "200002372069", {"salesOrderId": "S" * 64, "status": "0"})


def test_a_message_with_both_type_fields_is_a_trade_message() -> None:
    msg = json.loads(trade())
    msg["message_type"] = 3
    assert FAMILY.parse_push(SOURCE, form({"message": json.dumps(msg)})).order == OrderRef("1688", ORDER)


# --- the signed calls ----------------------------------------------------------------------------
class Recorder:
    """Answers POSTs with the next answer (status, JSON), recording (url, body, timeout)."""

    def __init__(self, *answers: Any, status: int = 200) -> None:
        self.answers, self.status, self.calls = list(answers), status, []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        self.calls.append((url, json, timeout))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        body = answer(json) if callable(answer) else answer
        return type("Resp", (), {"status_code": self.status, "json": lambda _: copy.deepcopy(body), "text": str(body)})()


def view(data: Any, code: int = 200, message: str = "操作成功") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def test_buyer_view_is_asked_for_the_order_signed_with_the_sources_timeout() -> None:
    http = Recorder(view(copy.deepcopy(SEED[0])))
    [snap] = FAMILY.fetch_orders(http, SOURCE, OrderRef("1688", SEED[0]["baseInfo"]["idOfStr"]))  # type: ignore[arg-type]
    [(url, body, timeout)] = http.calls
    assert (url, body["webSite"], body["orderId"], body["appKey"], timeout) == (
        "https://openapi.example/alibaba/trade/get/buyerView", "1688", snap.provider_order_id, "ak-unit", 2.5)
    assert len(body["sign"]) == 32 and "appSecret" not in body


@pytest.mark.parametrize(("data", "message"), [(None, "order 123 not found at daji"), ({"baseInfo": []}, "order 123 not found at daji"),
                                               ({"baseInfo": {"idOfStr": "124"}}, "asked for order 123, daji answered 124")])
def test_an_answer_that_is_not_the_order_asked_for_is_refused(data: Any, message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(Recorder(view(data)), SOURCE, OrderRef("1688", "123"))  # type: ignore[arg-type]
    assert err.value.message == message


def test_a_taobao_order_is_never_asked_for_and_says_why() -> None:
    with pytest.raises(PermanentProviderError) as err:
        FAMILY.fetch_orders(Recorder(view(None)), SOURCE, OrderRef("taobao", "200002638011"))  # type: ignore[arg-type]
    assert err.value.message == f"taobao order 200002638011: {spec.TAOBAO_IGNORED}"


@pytest.mark.parametrize(
    ("answer", "status", "error", "message"),
    [
        (view({"errorCode": "gw.QPS_LIMIT", "errorMessage": "too fast"}), 200, PermanentProviderError, "1688 error gw.QPS_LIMIT: too fast"),
        (view(None, code=500, message="busy"), 200, TransientProviderError, "provider code 500: busy"),
        (view(None, code=429, message="slow down"), 200, TransientProviderError, "provider code 429: slow down"),
        (view(None, code=401, message=f"bad sign for appSecret={SECRET}"), 200, PermanentProviderError, "provider code 401: bad sign for appSecret=***"),
        ({"anything": 1}, 503, TransientProviderError, "HTTP 503 from https://openapi.example/alibaba/trade/get/buyerView"),
    ],
)
def test_call_errors_are_sorted_and_scrubbed(answer: Any, status: int, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        FAMILY.fetch_orders(Recorder(answer, status=status), SOURCE, OrderRef("1688", ORDER))  # type: ignore[arg-type]
    assert err.value.message == message  # type: ignore[attr-defined]


def test_an_empty_error_code_is_a_success() -> None:
    record = copy.deepcopy(SEED[0])
    record["errorCode"] = ""
    [snap] = FAMILY.fetch_orders(Recorder(view(record)), SOURCE, OrderRef("1688", SEED[0]["baseInfo"]["idOfStr"]))  # type: ignore[arg-type]
    assert snap.provider_order_id == SEED[0]["baseInfo"]["idOfStr"]


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [(f"echo {SECRET}", "echo ***"), ("echo daji-secret-unit%2F%2B%3D", "echo ***"), ("echo daji-secret-unit%2F%2B%3D".replace("%2F", "/"), "echo daji-secret-unit/%2B%3D"),
     ("x" * 301, "x" * 299 + "…"), ("x" * 300, "x" * 300)],
)
def test_scrub(text: str, scrubbed: str) -> None:
    assert spec.scrub(text, SOURCE) == scrubbed


def test_scrub_masks_every_secret_but_not_other_credentials() -> None:
    source = dataclasses.replace(SOURCE, credentials={"app_key": "ak-unit", "app_secret": "s1", "other_secret": "s2", "empty_secret": ""})
    assert spec.scrub("ak-unit s1 s2 x", source) == "ak-unit *** *** x"


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (False, "false"), (2, "2"), ("1688", "1688"), (1.5, "1.5")])
def test_sign_values_are_written_as_java_writes_them(value: Any, text: str) -> None:
    assert spec._sign_value(value) == text
    assert spec.api_sign_text({"k": value, "nested": {"a": 1}, "list": [1]}, "S") == f"k={text}&secret=S"


@pytest.mark.parametrize(("data", "text"), [({"totalRecord": 17, "result": []}, "keyed order list call answered, sign accepted (17 order(s))"),
                                            ({"result": []}, "keyed order list call answered, sign accepted (? order(s))"),
                                            (None, "keyed order list call answered, sign accepted (? order(s))")])
def test_ping_reads_one_record(data: Any, text: str) -> None:
    http = Recorder(view(data))
    assert FAMILY.ping(http, SOURCE) == text  # type: ignore[arg-type]
    [(url, body, _)] = http.calls
    assert url == "https://openapi.example/alibaba/trade/getBuyerOrderList" and (body["page"], body["pageSize"]) == (1, 1)


def test_the_list_asks_in_china_time_with_milliseconds() -> None:
    http = Recorder(view({"result": [], "totalRecord": 0}))
    since = datetime(2026, 5, 19, 23, 59, 59, 987654, tzinfo=timezone.utc)
    until = since + timedelta(hours=1)
    assert list(FAMILY.list_orders(http, SOURCE, since, until)) == []  # type: ignore[arg-type]
    [(_, body, _)] = http.calls
    assert (body["createStartTime"], body["createEndTime"], body["page"], body["pageSize"]) == (
        "20260520075959987+0800", "20260520085959987+0800", 1, 20)


def lister(n: int, cap: int, total: Any = "count") -> Any:
    records = []
    for i in range(n):
        r = copy.deepcopy(SEED[0])
        r["baseInfo"].update(id=1000 + i, idOfStr=str(1000 + i))
        records.append(r)

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        size = min(body["pageSize"], cap)
        data: dict[str, Any] = {"result": records[(body["page"] - 1) * size: body["page"] * size]}
        if total is not None:
            data["totalRecord"] = n if total == "count" else total
        return view(data)

    return answer


def test_the_list_stops_at_total_record_exactly() -> None:
    http = Recorder(lister(40, cap=20))
    pages = list(FAMILY.list_orders(http, SOURCE, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)))  # type: ignore[arg-type]
    assert [len(p) for p in pages] == [20, 20] and len(http.calls) == 2


def test_a_text_total_is_not_trusted_and_the_list_is_read_to_its_end() -> None:
    http = Recorder(lister(3, cap=2, total="3"))
    pages = list(FAMILY.list_orders(http, SOURCE, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)))  # type: ignore[arg-type]
    assert [len(p) for p in pages] == [2, 1] and len(http.calls) == 3


def test_a_list_that_never_ends_is_read_for_max_pages_at_most() -> None:
    http = Recorder(view({"result": [copy.deepcopy(SEED[0])]}))
    pages = list(FAMILY.list_orders(http, SOURCE, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)))  # type: ignore[arg-type]
    assert len(pages) == len(http.calls) == MAX_PAGES


def test_an_unreadable_order_of_a_page_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    records = [copy.deepcopy(SEED[0]), {"baseInfo": {"idOfStr": None}}]
    snaps = spec._snapshots(SOURCE, records)
    assert [s.provider_order_id for s in snaps] == [SEED[0]["baseInfo"]["idOfStr"]]
    assert "reconcile.unreadable_order source=daji order=None error=1688 order record has no baseInfo.idOfStr or baseInfo.id" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_held_order_refs() -> None:
    assert FAMILY.held_order_ref("1688", ORDER, None, None) == OrderRef("1688", ORDER)
    assert FAMILY.held_order_ref("taobao", "200002638011", None, "200002638011") is None


def test_ids_of_exactly_64_characters_are_ids() -> None:
    trade_push = FAMILY.parse_push(SOURCE, form({"message": trade(msg_id="7" * 64, orderId="8" * 64)}))
    assert trade_push.order == OrderRef("1688", "8" * 64)
    taobao_push = FAMILY.parse_push(SOURCE, form({"message": json.dumps({"message_type": 3, "data": {"purchase_id": "9" * 64}})}))
    assert taobao_push.order is not None and taobao_push.order.order_id == "9" * 64


def test_a_taobao_message_missing_its_fields_has_a_stable_key() -> None:
    push = FAMILY.parse_push(SOURCE, form({"message": json.dumps({"message_type": 3})}))
    assert push.dedupe_key == hashlib.sha256("|".join(["daji", "taobao", "", "None", "3", "None", "", ""]).encode()).hexdigest()


@pytest.mark.parametrize(("data", "message"), [({"result": {"a": 1}, "totalRecord": 1}, "answer data.result is not a list of orders")])
def test_a_list_page_that_cannot_be_read_says_why(data: Any, message: str) -> None:
    with pytest.raises(PermanentProviderError) as err:
        list(FAMILY.list_orders(Recorder(view(data)), SOURCE, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)))  # type: ignore[arg-type]
    assert err.value.message == message


def test_a_list_answer_without_data_is_an_empty_list() -> None:
    http = Recorder(view("no page"))
    assert list(FAMILY.list_orders(http, SOURCE, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc))) == []  # type: ignore[arg-type]
    assert len(http.calls) == 1


def test_an_unreadable_order_is_logged_with_its_id(caplog: pytest.LogCaptureFixture) -> None:
    assert spec._snapshots(SOURCE, [{"baseInfo": {"idOfStr": "9" * 65}}]) == []
    assert f"reconcile.unreadable_order source=daji order={'9' * 65} error=1688 order id is not an id: {'9' * 64}…" in [
        r.getMessage() for r in caplog.records]


def test_scrub_masks_a_secret_as_json_escapes_it() -> None:
    source = dataclasses.replace(SOURCE, credentials={"app_key": "ak-unit", "app_secret": 's"cr3t-key'})
    assert spec.scrub('{"appSecret": "s\\"cr3t-key"}', source) == '{"appSecret": "***"}'
