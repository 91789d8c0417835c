"""The DajiSaaS family on its own: signatures, message parsing, and the order mapping to fen."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from marshmallow import ValidationError

from receiver.config import Source
from receiver.errors import BadSignature, MalformedPush, PermanentProviderError, TransientProviderError
from receiver.providers import OrderRef, RawPush, family_for
from receiver.providers import alibaba as model
from receiver.providers import dajisaas as spec
from receiver.sandbox.dajisaas import SEED

SECRET = "daji-secret-unit"
SOURCE = Source(
    name="daji",
    family="dajisaas",
    base_url="https://openapi.example",
    callback_token="cb-token-unit-0123456789",
    credentials={"app_key": "ak-unit", "app_secret": SECRET},
)
ORDER_ID = str(SEED[0]["baseInfo"]["id"])
FAMILY = family_for("dajisaas")


def form(fields: dict[str, str], content_type: str = "application/x-www-form-urlencoded; charset=UTF-8") -> RawPush:
    return RawPush(headers={}, body=urlencode(fields).encode(), content_type=content_type)


def message(type_: str = "ORDER_BUYER_VIEW_ORDER_PAY", msg_id: Any = 123456789, **data: Any) -> str:
    data = data or {"orderId": int(ORDER_ID), "currentStatus": "waitsellersend"}
    return json.dumps({"msgId": msg_id, "gmtBorn": 1758000000000, "type": type_, "userInfo": "b2b-1", "data": data})


def signed(text: str, signature: str | None = None) -> RawPush:
    return form({"message": text, "_dj_signature": spec.sign(SECRET, text) if signature is None else signature})


# --- the order mapping --------------------------------------------------------------------------
def test_the_documented_order_maps_to_fen() -> None:
    record = copy.deepcopy(SEED[0])
    record["baseInfo"].update(status="success", modifyTime="2025-09-13T09:21:24.000+00:00", refund=5.0)
    snap = model.order_snapshot(record)
    assert (snap.platform, snap.provider_order_id, snap.order_no, snap.purchase_id) == ("1688", ORDER_ID, None, None)
    assert (snap.status, snap.raw_status, snap.currency) == ("completed", "success", "CNY")
    assert (snap.product_amount, snap.shipping_fee, snap.discount, snap.total_amount, snap.refund_amount) == (
        4780, 450, 0, 4730, 500
    )
    assert snap.modified_at == datetime(2025, 9, 13, 9, 21, 24, tzinfo=timezone.utc)
    (line,) = snap.lines
    assert (line.line_id, line.product_id, line.sku_id, line.quantity) == ("290803333337363456", "800609753716", None, 2)
    assert (line.price, line.amount, line.refund_amount, line.raw_status) == (2390, 4280, 0, "waitbuyerpay")


def test_discount_is_read_in_fen_as_1688_documents_it() -> None:
    record = copy.deepcopy(SEED[0])
    record["baseInfo"]["discount"] = 150
    assert model.order_snapshot(record).discount == 150


# --- signatures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [str.upper, str.lower])
def test_signature_accepts_either_case_of_hex(case: Any) -> None:
    text = message()
    assert FAMILY.authenticate(SOURCE, signed(text, case(spec.sign(SECRET, text)))).timestamp_ms is None


def test_signature_is_hmac_sha1_over_message_and_its_value() -> None:
    text = message()
    expected = hmac.new(SECRET.encode(), ("message" + text).encode(), hashlib.sha1).hexdigest().upper()
    assert spec.sign(SECRET, text) == expected


@pytest.mark.parametrize(
    "signature", [spec.sign("another-secret", message()), spec.sign(SECRET, message() + " "), "", "zz"]
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


# --- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price"),
        ("ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES", "refund"),
        ("ORDER_BUYER_VIEW_ORDER_REFUND_AFTER_SALES", "refund"),
        ("ORDER_BUYER_VIEW_ORDER_PAY", "status"),
        ("ORDER_BUYER_VIEW_ORDER_COMFIRM_RECEIVEGOODS", "status"),
        ("ORDER_BUYER_VIEW_MODIFY_MEMO", "status"),
        ("LOGISTICS_MAIL_NO_CHANGE", "logistics"),
    ],
)
def test_message_types_map_to_kinds(type_: str, kind: str) -> None:
    push = FAMILY.parse_push(SOURCE, signed(message(type_)))
    assert (push.message_type, push.kind, push.actionable) == (type_, kind, True)
    assert push.order == OrderRef("1688", ORDER_ID, {spec.INFERRED_ORDER_FILTER: ORDER_ID})


def test_logistics_messages_name_their_order_inside_the_tracing_model() -> None:
    model = {"mailNo": "YT1", "statusChanged": "CONSIGN", "orderLogsItems": [{"orderId": int(ORDER_ID), "orderEntryId": 1}]}
    push = FAMILY.parse_push(SOURCE, signed(message("LOGISTICS_BUYER_VIEW_TRACE", OrderLogisticsTracingModel=model)))
    assert (push.kind, push.order.order_id if push.order else None) == ("logistics", ORDER_ID)


def test_unknown_types_are_kept_but_not_acted_on() -> None:
    push = FAMILY.parse_push(SOURCE, signed(message("PRODUCT_RELATION_VIEW_PRODUCT_EXPIRE", productIds="1")))
    assert (push.kind, push.actionable, push.order) == ("other", False, None)


@pytest.mark.parametrize("data", [{"currentStatus": "waitsellersend"}, {"orderId": "9" * 65}])
def test_a_trade_message_without_a_readable_order_is_malformed(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedPush) as err:
        FAMILY.parse_push(SOURCE, signed(message(**data)))
    assert err.value.field == "message.data.orderId"


@pytest.mark.parametrize(("text", "field"), [("not json", "message"), ("[1]", "message"), ('{"type": "X"}', "message.msgId")])
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


# --- re-fetching --------------------------------------------------------------------------------
class _Answer:
    def __init__(self, payload: Any) -> None:
        self.status_code, self.payload, self.text = 200, payload, json.dumps(payload)

    def json(self) -> Any:
        return self.payload


class _Http:
    """A requests.Session stand-in that answers every POST with one payload and keeps the requests."""

    def __init__(self, payload: Any) -> None:
        self.payload, self.requests = payload, []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any, **kwargs: Any) -> _Answer:
        self.requests.append((url, json))
        return _Answer(self.payload)


def _answer(*records: Any, code: int = 200, message: str = "操作成功") -> dict[str, Any]:
    return {"code": code, "message": message, "data": {"result": list(records), "totalRecord": len(records)}}


def test_fetch_sends_the_keys_and_the_order_and_keeps_only_that_order() -> None:
    stranger = copy.deepcopy(SEED[0])
    stranger["baseInfo"].update(id=1, idOfStr="1")
    http = _Http(_answer(stranger, copy.deepcopy(SEED[0])))
    ref = OrderRef("1688", ORDER_ID, {spec.INFERRED_ORDER_FILTER: ORDER_ID})
    (snap,) = FAMILY.fetch_orders(http, SOURCE, ref)  # type: ignore[arg-type]
    assert snap.provider_order_id == ORDER_ID
    ((url, payload),) = http.requests
    assert url == "https://openapi.example/alibaba/trade/getBuyerOrderList"
    assert payload == {"appKey": "ak-unit", "appSecret": SECRET, spec.INFERRED_ORDER_FILTER: ORDER_ID, "page": 1,
                       "pageSize": spec.PAGE_SIZE}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (_answer(code=500, message="system busy"), TransientProviderError),
        (_answer(code=429, message="too many requests"), TransientProviderError),
        (_answer(code=401, message="appKey或appSecret错误"), PermanentProviderError),
        (_answer(), PermanentProviderError),  # not found
        ({"message": "no code"}, PermanentProviderError),
    ],
)
def test_fetch_errors_are_sorted(payload: Any, error: type[Exception]) -> None:
    ref = OrderRef("1688", ORDER_ID, {spec.INFERRED_ORDER_FILTER: ORDER_ID})
    with pytest.raises(error):
        FAMILY.fetch_orders(_Http(payload), SOURCE, ref)  # type: ignore[arg-type]


def test_credentials_schema_refuses_unknown_keys() -> None:
    schema = FAMILY.credentials_schema()
    assert schema.load({"app_key": "k", "app_secret": "s"}) == {"app_key": "k", "app_secret": "s"}
    for bad in ({"app_key": "k"}, {"app_key": "k", "app_secret": "s", "access_key": "x"}):
        with pytest.raises(ValidationError):
            schema.load(bad)
