"""The Xportcn family: Xportcn, its white label PandaPon and the Thai portal (one API, several hosts).

Everything the service knows about this family's pushes, API signing and order JSON is here, as data
where it can be. Names starting with INFERRED_ mark what the provider does not document and we chose.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from receiver.errors import BadSignature, MalformedPush, PermanentProviderError
from receiver.providers import (
    MAX_PAGES,
    LineSnapshot,
    OrderRef,
    OrderSnapshot,
    Push,
    PushAuth,
    RawPush,
    answer_data,
    first_field,
    as_int,
    order_records,
    post_json,
)

if TYPE_CHECKING:
    import requests

    from receiver.config import Source

NAME = "xportcn"

# --- API ----------------------------------------------------------------------------------------
SIGNED_HEADERS = ("access-key", "timestamp", "nonce-str", "signature")
USER_ID_HEADER = "user-id"
NONCE_ALPHABET = string.ascii_letters + string.digits
NONCE_LENGTH = 32
SUCCESS_CODE = 200
# Where the 1688 order list lives, per portal: the Thai portal serves it under /v2.
PORTALS = {
    "xportcn": {"alibaba_order_page": "/alibaba/order/page"},
    "pandapon": {"alibaba_order_page": "/alibaba/order/page"},
    "thai": {"alibaba_order_page": "/v2/alibaba/order/page"},
}
TAOBAO_PURCHASE_PAGE = "/open/purchase/page"
PAGE_SIZE = 20
LIST_PAGE_SIZE = 50
# The list APIs filter by creation time, given as "YYYY-MM-DD HH:MM:SS" without a zone: we take it to
# be China time, the platform's own.
INFERRED_PROVIDER_TZ = timezone(timedelta(hours=8))
TAOBAO_WINDOW = ("beginDateTime", "endDateTime")
ALIBABA_WINDOW = ("orderTimeBegin", "orderTimeEnd")
# Answer codes (in the body, under HTTP 200) worth retrying: the provider documents none, so we
# treat "too many requests" and the 5xx range as transient like their HTTP namesakes.
INFERRED_TRANSIENT_CODES = frozenset({429, *range(500, 600)})

# --- pushes -------------------------------------------------------------------------------------
PLATFORMS = {0: "taobao", 1: "1688"}
MESSAGE_KINDS = {
    "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY": "price",
    "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND": "refund",
    "ORDER_CREATE": "status",
    "ORDER_CANCEL": "status",
    "ORDER_PAY_SUCCESS": "status",
}
# The API reference names the 1688 price message with a "1688_" prefix; we read any type that way.
INFERRED_PLATFORM_TYPE_PREFIXES = ("1688_", "TAOBAO_")
# The "order status modification" callback page was not captured: these are the plausible names.
INFERRED_STATUS_TYPES = ("ORDER_STATUS_MODIFY", "ORDER_STATUS_CHANGE", "ORDER_BUYER_VIEW_ORDER_STATUS_MODIFY")
MESSAGE_KINDS.update({t: "status" for t in INFERRED_STATUS_TYPES})
# Which body keys name the order. 1688 bodies carry orderId (the 1688 order number, the API's
# tbOrderId); Taobao bodies were not captured, so we look for the purchase id, then the order number.
ALIBABA_ORDER_ID_KEYS = ("orderId", "tbOrderId")
INFERRED_TAOBAO_ORDER_KEYS = (("purchaseId", "purchaseId"), ("orderNo", "orderNo"), ("orderId", "purchaseId"))

# --- orders -------------------------------------------------------------------------------------
TAOBAO_STATUS = {
    12: "awaiting_payment",  # building
    0: "awaiting_payment",
    1: "awaiting_payment",  # payment voucher uploaded
    2: "awaiting_payment",  # finance approved
    3: "awaiting_payment",  # finance refused
    5: "awaiting_payment",  # waiting for finance to pay
    10: "awaiting_shipment",
    11: "shipped",
    4: "closed",
    9: "other",
}
ALIBABA_STATUS = {
    1: "awaiting_payment",
    2: "awaiting_shipment",
    3: "shipped",
    4: "received",
    5: "completed",
    6: "cancelled",
    7: "closed",
    8: "other",
}
TAOBAO_REFUNDED = 100
# Taobao sub-orders show a refund state but the captured example has no refunded amount; when
# taobaoRefundOrder carries one of these keys we use it, else a refunded line counts in full.
INFERRED_TAOBAO_REFUND_FEE_KEYS = ("refundFee", "refund_fee", "refundAmount")
CURRENCY = "CNY"


# --- signing ------------------------------------------------------------------------------------
def sign(access_key: str, timestamp: str, nonce: str, access_secret: str) -> str:
    """The family's signature: upper-case hex MD5 of key + timestamp + nonce + secret, no separators."""
    text = f"{access_key}{timestamp}{nonce}{access_secret}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def signed_headers(access_key: str, access_secret: str, user_id: str, now_ms: int | None = None) -> dict[str, str]:
    """The headers that authenticate one API request (or one push, in the sandbox)."""
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    nonce = "".join(secrets.choice(NONCE_ALPHABET) for _ in range(NONCE_LENGTH))
    return {
        "access-key": access_key,
        "timestamp": timestamp,
        "nonce-str": nonce,
        USER_ID_HEADER: user_id,
        "signature": sign(access_key, timestamp, nonce, access_secret),
    }


def timestamp_ms(value: str) -> int:
    """A header timestamp in ms; the docs show milliseconds, public clients send seconds."""
    number = int(value)
    return number if number > 10**12 else number * 1000


# --- schemas ------------------------------------------------------------------------------------
class CredentialsSchema(Schema):
    """The keys of an Xportcn-family source besides the common ones."""

    class Meta:
        unknown = "raise"

    access_key = fields.String(required=True, validate=validate.Length(min=1))
    access_secret = fields.String(required=True, validate=validate.Length(min=1))
    user_id = fields.String(required=True, validate=validate.Length(min=1))
    portal = fields.String(load_default="xportcn", validate=validate.OneOf(sorted(PORTALS)))


class _DigitString(fields.Field):
    """A string of digits, or an integer: push timestamps come as either."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value.isdigit():
            return value
        raise ValidationError("must be a string of digits")


class _MessageBody(fields.Field):
    """The message body: a JSON object, or a string holding one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise ValidationError("must be a JSON object or a string holding one") from None
        if not isinstance(value, dict):
            raise ValidationError("must be a JSON object or a string holding one")
        return value


class EnvelopeSchema(Schema):
    """`{messageType, messageBody, messagePlatform, timestamp}` as the message access manual gives it."""

    class Meta:
        unknown = EXCLUDE

    messageType = fields.String(required=True, validate=validate.Length(min=1, max=128))
    messageBody = _MessageBody(required=True)
    messagePlatform = fields.Integer(required=True, strict=True, validate=validate.OneOf(sorted(PLATFORMS)))
    timestamp = _DigitString(required=True)


# One instance for every push: a marshmallow schema is reusable, and building one per push costs
# more than validating the envelope.
ENVELOPE = EnvelopeSchema()


def message_kind(message_type: str) -> str | None:
    """The kind (price / status / refund) of a message type, or None when we do not know it."""
    if message_type in MESSAGE_KINDS:
        return MESSAGE_KINDS[message_type]
    for prefix in INFERRED_PLATFORM_TYPE_PREFIXES:
        if message_type.startswith(prefix):
            return MESSAGE_KINDS.get(message_type[len(prefix):])
    return None


# The inbox keeps an order id in 64 characters; 1688 and Taobao ids are 19 digits at most.
MAX_ID_LENGTH = 64


def _text_id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip()):
        text = str(value).strip()
        return text if len(text) <= MAX_ID_LENGTH else None
    return None


def order_ref(platform: str, body: Mapping[str, Any]) -> OrderRef:
    """Which order a push body names, and how to ask the API for it."""
    if platform == "1688":
        for key in ALIBABA_ORDER_ID_KEYS:
            if (value := _text_id(body.get(key))) is not None:
                return OrderRef(platform, value, {"tbOrderId": value})
        raise MalformedPush("messageBody has no orderId", field="messageBody.orderId")
    for key, api_filter in INFERRED_TAOBAO_ORDER_KEYS:
        if (value := _text_id(body.get(key))) is not None:
            return OrderRef(platform, value, {api_filter: value})
    raise MalformedPush("messageBody has no purchaseId or orderNo", field="messageBody.purchaseId")


class XportcnFamily:
    """The family's implementation of the provider seam."""

    name = NAME

    def credentials_schema(self) -> Schema:
        return CredentialsSchema()

    def authenticate(self, source: Source, raw: RawPush) -> PushAuth:
        """Check the MD5 header signature when the push carries one; the URL token guards the rest."""
        present = [h for h in SIGNED_HEADERS if raw.headers.get(h)]
        if not present:
            return PushAuth()
        if len(present) != len(SIGNED_HEADERS):
            missing = sorted(set(SIGNED_HEADERS) - set(present))
            raise BadSignature(f"signature headers incomplete, missing {', '.join(missing)}")
        h = raw.headers
        creds = source.credentials
        key_ok = hmac.compare_digest(h["access-key"].encode(), creds["access_key"].encode())
        expected = sign(creds["access_key"], h["timestamp"], h["nonce-str"], creds["access_secret"])
        sig_ok = hmac.compare_digest(h["signature"].upper().encode(), expected.encode())
        if not (key_ok and sig_ok):
            raise BadSignature("signature does not verify")
        try:
            ts = timestamp_ms(h["timestamp"])
        except ValueError:
            raise BadSignature("timestamp header is not a number") from None
        return PushAuth(timestamp_ms=ts, nonce=h["nonce-str"])

    def parse_push(self, source: Source, raw: RawPush) -> Push:
        """Validate the JSON envelope and find the order it names."""
        try:
            data = json.loads(raw.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedPush("body is not valid JSON", field="body") from None
        if not isinstance(data, dict):
            raise MalformedPush("body must be a JSON object", field="body")
        try:
            env = ENVELOPE.load(data)
        except ValidationError as err:
            field = first_field(err, "body")
            raise MalformedPush(f"{field}: {err.messages[field]}", field=field) from None
        platform = PLATFORMS[env["messagePlatform"]]
        kind = message_kind(env["messageType"])
        ref = order_ref(platform, env["messageBody"]) if kind else None
        if ref is None:
            # Unknown types are stored and acknowledged; we still note the order if one is named.
            try:
                ref = order_ref(platform, env["messageBody"])
            except MalformedPush:
                ref = None
        key = "|".join([source.name, env["messageType"], ref.order_id if ref else "", env["timestamp"]])
        return Push(
            message_type=env["messageType"],
            kind=kind or "other",
            dedupe_key=hashlib.sha256(key.encode()).hexdigest(),
            order=ref,
            ignored=None if kind else f"message type {env['messageType']} is not acted on",
        )

    def fetch_orders(self, http: requests.Session, source: Source, ref: OrderRef) -> list[OrderSnapshot]:
        """Re-fetch the order through the signed list API, filtered to it."""
        creds = source.credentials
        if ref.platform == "1688":
            path = PORTALS[creds["portal"]]["alibaba_order_page"]
            payload: dict[str, Any] = {"pageNum": 1, "pageSize": PAGE_SIZE, "tbOrderId": ref.lookup["tbOrderId"]}
        else:
            path = TAOBAO_PURCHASE_PAGE
            payload = {"pageNum": 1, "pageSize": PAGE_SIZE, **ref.lookup}
            if "purchaseId" in payload and str(payload["purchaseId"]).isdigit():
                payload["purchaseId"] = int(payload["purchaseId"])
        headers = signed_headers(creds["access_key"], creds["access_secret"], creds["user_id"])
        answer = post_json(http, source.base_url + path, payload, headers, source.timeout)
        records = _page_records(answer)
        parse = _alibaba_order if ref.platform == "1688" else _taobao_order
        snapshots = [parse(r) for r in records]
        wanted = ref.lookup
        found = [s for s in snapshots if _matches(s, wanted)]
        if not found:
            raise PermanentProviderError(f"order {ref.order_id} not found at {source.name}")
        return found

    def ping(self, http: requests.Session, source: Source) -> str:
        """The cheapest signed read, one record of the 1688 order list: proves the keys and the URL."""
        creds = source.credentials
        path = PORTALS[creds["portal"]]["alibaba_order_page"]
        headers = signed_headers(creds["access_key"], creds["access_secret"], creds["user_id"])
        answer = post_json(http, source.base_url + path, {"pageNum": 1, "pageSize": 1}, headers, source.timeout)
        _page_records(answer)
        return f"signed order list call answered ({answer['data'].get('total', '?')} order(s))"


    def list_orders(
        self, http: requests.Session, source: Source, since: datetime, until: datetime
    ) -> Iterator[list[OrderSnapshot]]:
        """Page through both platforms' order lists for orders created in the window."""
        creds = source.credentials
        window = {"taobao": TAOBAO_WINDOW, "1688": ALIBABA_WINDOW}
        paths = {"taobao": TAOBAO_PURCHASE_PAGE, "1688": PORTALS[creds["portal"]]["alibaba_order_page"]}
        for platform, (begin_key, end_key) in window.items():
            parse = _alibaba_order if platform == "1688" else _taobao_order
            span = {begin_key: _provider_time(since), end_key: _provider_time(until)}
            for page in range(1, MAX_PAGES + 1):
                payload = {"pageNum": page, "pageSize": LIST_PAGE_SIZE, **span}
                headers = signed_headers(creds["access_key"], creds["access_secret"], creds["user_id"])
                records = _page_records(post_json(http, source.base_url + paths[platform], payload, headers, source.timeout))
                if records:
                    yield [parse(r) for r in records]
                if len(records) < LIST_PAGE_SIZE:
                    break


def _provider_time(moment: datetime) -> str:
    """A time as the list APIs take it: "YYYY-MM-DD HH:MM:SS" on the provider's clock."""
    return moment.astimezone(INFERRED_PROVIDER_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _page_records(answer: Any) -> list[dict[str, Any]]:
    """The records of a `{code, msg, data: {total, data: [...]}}` answer; raise on an error code."""
    page = answer_data(answer, "msg", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)
    return order_records(page.get("data") if isinstance(page, dict) else None, "data.data")


def _matches(snapshot: OrderSnapshot, lookup: Mapping[str, str]) -> bool:
    """Whether a record is the one asked for: list filters are a courtesy we do not rely on."""
    ids = {
        "tbOrderId": snapshot.provider_order_id,
        "purchaseId": snapshot.purchase_id,
        "orderNo": snapshot.order_no,
    }
    return all(ids.get(k) == str(v) for k, v in lookup.items())


def _json_field(value: Any) -> dict[str, Any]:
    """A nested JSON-in-a-string field, or {} when it is absent or unreadable."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _status(table: Mapping[int, str], raw: Any) -> tuple[str, str]:
    code = as_int(raw, "status")
    return table.get(code, "other"), str(code)


def _alibaba_order(r: Mapping[str, Any]) -> OrderSnapshot:
    """A 1688 order record of `/alibaba/order/page` as our order."""
    if not _text_id(r.get("tbOrderId")):
        raise PermanentProviderError("1688 order record has no tbOrderId")
    status, raw_status = _status(ALIBABA_STATUS, r.get("orderStatus"))
    lines = tuple(
        LineSnapshot(
            line_id=str(d.get("id")),
            product_id=_text_id(d.get("productId")),
            sku_id=_text_id(d.get("skuId")),
            title=d.get("name"),
            quantity=as_int(d.get("quantity"), "quantity"),
            price=as_int(d.get("price"), "price"),
            amount=as_int(d.get("itemAmount"), "itemAmount"),
            refund_amount=as_int(d.get("refund"), "refund"),
            raw_status=None if d.get("status") is None else str(d.get("status")),
        )
        for d in r.get("orderDetailInfoVOS") or []
    )
    return OrderSnapshot(
        platform="1688",
        provider_order_id=str(r["tbOrderId"]),
        order_no=_text_id(r.get("orderNo")),
        purchase_id=None,
        status=status,
        raw_status=raw_status,
        product_amount=as_int(r.get("productAmount"), "productAmount"),
        shipping_fee=as_int(r.get("shippingFee"), "shippingFee"),
        discount=as_int(r.get("discount"), "discount"),
        total_amount=as_int(r.get("totalAmount"), "totalAmount"),
        refund_amount=as_int(r.get("refundAmount"), "refundAmount"),
        currency=CURRENCY,
        modified_at=None,
        lines=lines,
    )


def _taobao_line(sub: Mapping[str, Any]) -> LineSnapshot:
    result = _json_field(sub.get("subOrderResult")) or _json_field(sub.get("createSubOrderResult"))
    quantity = as_int(result.get("quantity"), "quantity") or 1
    amount = as_int(result.get("purchase_amount", result.get("estimate_amount")), "purchase_amount")
    refund = 0
    if as_int(sub.get("refundStatus"), "refundStatus") == TAOBAO_REFUNDED:
        refund_order = _json_field(sub.get("taobaoRefundOrder"))
        fee = next((refund_order[k] for k in INFERRED_TAOBAO_REFUND_FEE_KEYS if k in refund_order), None)
        refund = amount if fee is None else as_int(fee, "refundFee")
    return LineSnapshot(
        line_id=str(sub.get("id")),
        product_id=_text_id(result.get("item_id")),
        sku_id=_text_id(result.get("sku_id")),
        title=result.get("title"),
        quantity=quantity,
        price=amount // quantity,
        amount=amount,
        refund_amount=refund,
        raw_status=sub.get("subOrderStatus"),
    )


def _taobao_order(r: Mapping[str, Any]) -> OrderSnapshot:
    """A Taobao purchase record of `/open/purchase/page` as our order: one purchase is one order."""
    purchase_id = _text_id(r.get("purchaseId"))
    if purchase_id is None:
        raise PermanentProviderError("Taobao purchase record has no purchaseId")
    status, raw_status = _status(TAOBAO_STATUS, r.get("status"))
    lines = tuple(_taobao_line(s) for s in r.get("subOrderVOS") or [])
    product = sum(line.amount for line in lines)
    shipping = sum(
        as_int(_json_field(s.get("subOrderResult")).get("domestic_post_fee"), "domestic_post_fee")
        for s in r.get("subOrderVOS") or []
    )
    total = as_int(r.get("purchaseAmount"), "purchaseAmount")
    return OrderSnapshot(
        platform="taobao",
        provider_order_id=purchase_id,
        order_no=_text_id(r.get("orderNo")),
        purchase_id=purchase_id,
        status=status,
        raw_status=raw_status,
        product_amount=product,
        shipping_fee=shipping,
        discount=max(0, product + shipping - total),
        total_amount=total,
        refund_amount=sum(line.refund_amount for line in lines),
        currency=CURRENCY,
        modified_at=None,
        lines=lines,
    )


FAMILY = XportcnFamily()
