"""The Xportcn family: Xportcn, its white label PandaPon and the Thai "v2" portal (one API, several hosts).

Everything the service knows about this family's pushes, API signing and order JSON is here, as data
where it can be. The facts come from the providers' published pages (shared/provider-docs/
PUBLISHED-DOCS.md, section 1, outside this repository); names starting with INFERRED_ mark what the
docs do not state and we chose.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import string
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from receiver.errors import BadSignature, MalformedPush, PermanentProviderError
from receiver.providers import (
    CHINA_TIME,
    Http,
    LineSnapshot,
    OrderRef,
    OrderSnapshot,
    Push,
    PushAuth,
    RawPush,
    Source,
    alibaba,
    answer_data,
    as_int,
    first_field,
    has_control,
    loader,
    order_records,
    pages_by_total,
    plain_text,
    request_json,
)

if TYPE_CHECKING:
    pass

NAME = "xportcn"
log = logging.getLogger("receiver.providers.xportcn")

# --- API ----------------------------------------------------------------------------------------
# Every request carries these headers (doc-vnm.pandapon.com/api-250496569); `nonce-str` is marked
# optional there and absent from the v2 pages, so a push may come without it.
SIGNATURE_HEADERS = ("access-key", "timestamp", "signature")
NONCE_HEADER = "nonce-str"
USER_ID_HEADER = "user-id"
NONCE_ALPHABET = string.ascii_letters + string.digits
NONCE_LENGTH = 32
SUCCESS_CODE = 200
# The paths of each portal. PandaPon documents the 1688 order detail (doc-vnm.pandapon.com/
# api-250496569); Xportcn's KA docs list one without its path and the Thai portal none, so those
# re-fetch a 1688 order through the order page. The Taobao refund query is documented on PandaPon
# (api-250496551) and, under /v2, on the Thai portal (doc-th.pandapon.com/api-289190464).
PORTALS: dict[str, dict[str, str | None]] = {
    "xportcn": {
        "alibaba_order_page": "/alibaba/order/page",
        "alibaba_order_detail": None,
        "taobao_purchase_page": "/open/purchase/page",
        "taobao_refund_query": "/open/order/refund/query",  # inferred: the PandaPon path
    },
    "pandapon": {
        "alibaba_order_page": "/alibaba/order/page",
        "alibaba_order_detail": "/alibaba/order/detail",
        "taobao_purchase_page": "/open/purchase/page",
        "taobao_refund_query": "/open/order/refund/query",
    },
    "thai": {
        "alibaba_order_page": "/v2/alibaba/order/page",
        "alibaba_order_detail": None,
        # The v2 purchase page is not documented: the v1 path, which the same platform serves.
        "taobao_purchase_page": "/open/purchase/page",
        "taobao_refund_query": "/v2/taobao/order/refund/query",
    },
}
ALIBABA_WEBSITE = "1688"
# No page size limit is documented; the reconciliation asks for this many and follows `total`.
LIST_PAGE_SIZE = 50
LOOKUP_PAGE_SIZE = 20
# The list APIs filter by creation time, given as "YYYY-MM-DD HH:MM:SS" without a zone: we take it to
# be China time, the platform's own.
INFERRED_PROVIDER_TZ = CHINA_TIME
TAOBAO_WINDOW = ("beginDateTime", "endDateTime")
ALIBABA_WINDOW = ("orderTimeBegin", "orderTimeEnd")
# The documented filters of each list (000, 001 and 002 in shared/provider-docs): a real server ignores
# any other, so we send only these and check every record ourselves. Only the Thai portal's 1688 page
# documents orderNo.
ALIBABA_PAGE_FILTERS = {"xportcn": ("tbOrderId",), "pandapon": ("tbOrderId",), "thai": ("tbOrderId", "orderNo")}
TAOBAO_PAGE_FILTERS = ("purchaseId", "orderNo")
# Answer codes (in the body, under HTTP 200) worth retrying: the provider documents none, so we
# treat "too many requests" and the 5xx range as transient like their HTTP namesakes.
INFERRED_TRANSIENT_CODES = frozenset({429, *range(500, 600)})

# --- pushes -------------------------------------------------------------------------------------
PLATFORMS = {0: "taobao", 1: "1688"}
# The message access manual's types (doc-en-ka.xportcn.com/doc-7259275); the API reference names
# them with a platform prefix (1688_…, TAOBAO_…), which we strip: messagePlatform names the platform.
MESSAGE_KINDS = {
    "ORDER_CREATE": "status",
    "ORDER_CANCEL": "status",
    "ORDER_PAY_SUCCESS": "status",
    "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY": "price",
    "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND": "refund",
}
PLATFORM_TYPE_PREFIXES = ("1688_", "TAOBAO_")
# Types neither the docs nor 1688's topic list name (the status pages were not readable): their
# kind, for metrics and alerts, by the first word of this list their name holds.
# Whatever the kind, a push that names an order is re-fetched.
INFERRED_KIND_WORDS = (
    ("PRICE", "price"),
    ("REFUND", "refund"),
    ("LOGISTICS", "logistics"),
    ("SENDGOODS", "logistics"),
    ("ORDER", "status"),
)

# The ids a push body can carry, by shape, as (body key, our id name). Our id names:
#   tbOrderId: the 1688 order number; orderNo: the platform's order number; purchaseId: a Taobao
#   purchase; outerPurchaseId: a purchase's purchaseOrderOuterId; refundId: an after-sales case.
SUMMARY_IDS = {
    # The manual's summary (doc-7259275): orderId is the 1688 order number (the buyer suffix …134260
    # of the KA samples), orderNo the platform's order number. Never `id`, the platform's row id.
    "1688": (("orderId", "tbOrderId"), ("orderNo", "orderNo"), ("refundId", "refundId")),
    # Taobao summaries were not shown: we read them as the purchase list names its ids.
    "taobao": (("purchaseId", "purchaseId"), ("orderId", "purchaseId"), ("orderNo", "orderNo"), ("refundId", "refundId")),
}
# The Taobao price-correction body (doc-en.pandapon.com/api-263477629): salesOrderId, "淘宝订单号", is
# the distributor's sales order, which we take to be the platform's orderNo; each sub-order's
# purchase_order_outer_id is the purchase record's purchaseOrderOuterId.
INFERRED_TAOBAO_BODY_IDS = (("salesOrderId", "orderNo"),)
INFERRED_TAOBAO_SUB_ORDER_IDS = (("purchase_order_outer_id", "outerPurchaseId"), ("refund_id", "refundId"))
# Which id names the order in the inbox and in logs, most specific first.
ORDER_ID_PREFERENCE = ("tbOrderId", "purchaseId", "orderNo", "outerPurchaseId")
# Which id picks a re-fetched record, most specific first: one orderNo may hold several purchases.
MATCH_PREFERENCE = ("tbOrderId", "purchaseId", "outerPurchaseId", "orderNo")

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
# The order page's integer statuses, as the names 1688 and the order detail give them (002): raw
# statuses read the same whichever call fetched the order.
ALIBABA_STATUS_NAMES = {
    1: "waitbuyerpay",
    2: "waitsellersend",
    3: "waitbuyerreceive",
    4: "confirm_goods",
    5: "success",
    6: "cancel",
    7: "terminated",
}
# The page's line id that the order detail calls subItemID: for a one-line order 1688 gives the
# order number to both (002's example, and 2257164624870311973 in DajiSaaS's buyerView sample).
INFERRED_LINE_ID_KEY = "subTbOrderId"
# doc-en-ka.xportcn.com/doc-8873281: SubOrderDetailVO2.refundStatus, and (inferred) the refund
# query's refundStatus, whose page gives no values.
TAOBAO_REFUNDED = 100
# The unit of the refund query's refundFee is not stated: fen, like every other Taobao amount here.
INFERRED_REFUND_FEE_KEY = "refundFee"
CURRENCY = "CNY"


# --- signing ------------------------------------------------------------------------------------
def sign(access_key: str, timestamp: str, nonce: str, access_secret: str) -> str:
    """The family's signature: upper-case hex MD5 of key + timestamp + nonce + secret, no separators."""
    text = f"{access_key}{timestamp}{nonce}{access_secret}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def signed_headers(access_key: str, access_secret: str, user_id: str, now_ms: int | None = None) -> dict[str, str]:
    """The headers that authenticate one API request."""
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    nonce = "".join(secrets.choice(NONCE_ALPHABET) for _ in range(NONCE_LENGTH))
    return {
        "access-key": access_key,
        "timestamp": timestamp,
        NONCE_HEADER: nonce,
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
    # Whether pushes are signed is not documented: off, the URL token (and allow-list) guard them and
    # a signature is checked when one comes; on, an unsigned push is refused.
    require_signature = fields.Boolean(load_default=False)


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

    messageType = fields.String(required=True, validate=[validate.Length(min=1, max=128), plain_text])
    messageBody = _MessageBody(required=True)
    messagePlatform = fields.Integer(required=True, strict=True, validate=validate.OneOf(sorted(PLATFORMS)))
    timestamp = _DigitString(required=True)


# One instance for every push: a marshmallow schema is reusable, and building one per push costs
# more than validating the envelope.
ENVELOPE = EnvelopeSchema()
LOAD_ENVELOPE = loader(ENVELOPE)


def base_type(message_type: str) -> str:
    """A message type without its platform prefix: `1688_ORDER_CANCEL` is `ORDER_CANCEL`."""
    for prefix in PLATFORM_TYPE_PREFIXES:
        if message_type.startswith(prefix):
            return message_type[len(prefix) :]
    return message_type


def message_kind(message_type: str) -> str:
    """The kind (price / status / refund / logistics / other) of a message type, prefixed or not."""
    name = base_type(message_type)
    known = MESSAGE_KINDS.get(name) or alibaba.TOPIC_KINDS.get(name)
    return known or next((kind for word, kind in INFERRED_KIND_WORDS if word in name), "other")


def body_shape(body: Mapping[str, Any]) -> str:
    """Which of the documented body shapes a message body has: summary, model or taobao."""
    if isinstance(body.get("baseInfo"), dict):
        return "model"
    if "salesOrderId" in body or isinstance(body.get("subOrders"), list):
        return "taobao"
    return "summary"


def body_ids(shape: str, platform: str, body: Mapping[str, Any]) -> dict[str, str]:
    """The ids a message body carries, under our id names (see SUMMARY_IDS)."""
    found: dict[str, str] = {}

    def take(source: Mapping[str, Any], pairs: tuple[tuple[str, str], ...], where: str) -> None:
        for key, name in pairs:
            if name in found or (value := alibaba.text_id(source.get(key))) is None:
                continue
            if len(value) > MAX_ID_LENGTH:
                raise MalformedPush(f"{where}{key} is longer than {MAX_ID_LENGTH} characters", field=f"{where}{key}")
            if has_control(value):
                raise MalformedPush(f"{where}{key} holds a control character", field=f"{where}{key}")
            found[name] = value

    if shape == "model":
        take(body["baseInfo"], (("idOfStr", "tbOrderId"), ("id", "tbOrderId"), ("refundId", "refundId")), "messageBody.baseInfo.")
    elif shape == "taobao":
        take(body, INFERRED_TAOBAO_BODY_IDS, "messageBody.")
        subs = body.get("subOrders")
        for sub in subs if isinstance(subs, list) else []:
            if isinstance(sub, dict):
                take(sub, INFERRED_TAOBAO_SUB_ORDER_IDS, "messageBody.subOrders[].")
    else:
        take(body, SUMMARY_IDS[platform], "messageBody.")
    return found


# The inbox keeps an order id in 64 characters; 1688 and Taobao ids are 19 digits at most.
MAX_ID_LENGTH = 64


def order_ref(platform: str, ids: Mapping[str, str]) -> OrderRef | None:
    """The order a push names, or None when it names none; `lookup` holds every id it carries."""
    order_id = next((ids[name] for name in ORDER_ID_PREFERENCE if name in ids), None)
    return None if order_id is None else OrderRef(platform, order_id, dict(ids))


def unreachable(source: Source, ref: OrderRef) -> str | None:
    """Why the portal's API cannot look the order up by the ids a push carries, or None when it can."""
    portal = source.credentials["portal"]
    if ref.platform == "1688" and not set(ref.lookup) & set(ALIBABA_PAGE_FILTERS[portal]):
        return f"the push names its 1688 order only by orderNo, which the {portal} order page cannot look up"
    if ref.platform == "taobao" and not set(ref.lookup) & set(TAOBAO_PAGE_FILTERS):
        return "the push names its Taobao order by no id the purchase list can look up"
    return None


def dedupe_key(source: str, envelope: Mapping[str, Any]) -> str:
    """The same message, however its JSON was spaced or ordered: the source and the whole envelope."""
    try:
        # ASCII: a lone surrogate somewhere in the body escapes instead of failing to encode.
        canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":"))
    except RecursionError:
        raise MalformedPush("messageBody nests too deep", field="messageBody") from None
    return hashlib.sha256(f"{source}\n{canonical}".encode()).hexdigest()


class XportcnFamily:
    """The family's implementation of the provider seam."""

    push_headers: tuple[str, ...] = (*SIGNATURE_HEADERS, NONCE_HEADER, USER_ID_HEADER)

    name = NAME

    def credentials_schema(self) -> Schema:
        return CredentialsSchema()

    def authenticate(self, source: Source, raw: RawPush) -> PushAuth:
        """Check the MD5 header signature when the push carries one; the URL token guards the rest.

        The replay key is the signature itself: it stands for (timestamp, nonce), and the nonce is
        optional, so a push re-sent with its headers and a new body is refused even without one.
        """
        h = raw.headers
        present = [name for name in SIGNATURE_HEADERS if h.get(name)]
        if not present:
            if source.credentials.get("require_signature"):
                raise BadSignature("push is not signed and this source requires a signature")
            return PushAuth()
        if len(present) != len(SIGNATURE_HEADERS):
            missing = sorted(set(SIGNATURE_HEADERS) - set(present))
            raise BadSignature(f"signature headers incomplete, missing {', '.join(missing)}")
        creds = source.credentials
        key_ok = hmac.compare_digest(h["access-key"].encode(), creds["access_key"].encode())
        expected = sign(creds["access_key"], h["timestamp"], h.get(NONCE_HEADER) or "", creds["access_secret"])
        given = h["signature"].upper()
        sig_ok = hmac.compare_digest(given.encode(), expected.encode())
        if not (key_ok and sig_ok):
            raise BadSignature("signature does not verify")
        try:
            ts = timestamp_ms(h["timestamp"])
        except ValueError:
            raise BadSignature("timestamp header is not a number") from None
        return PushAuth(timestamp_ms=ts, nonce=given)

    def parse_push(self, source: Source, raw: RawPush) -> Push:
        """Validate the JSON envelope, read the body in whichever shape it comes, find the order."""
        try:
            data = json.loads(raw.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedPush("body is not valid JSON", field="body") from None
        if not isinstance(data, dict):
            raise MalformedPush("body must be a JSON object", field="body")
        try:
            env = LOAD_ENVELOPE(data)
        except ValidationError as err:
            field = first_field(err, "body")
            raise MalformedPush(f"{field}: {err.normalized_messages()[field]}", field=field) from None
        platform = PLATFORMS[env["messagePlatform"]]
        body = env["messageBody"]
        shape = body_shape(body)
        ref = order_ref(platform, body_ids(shape, platform, body))
        return Push(
            message_type=env["messageType"],
            kind=message_kind(env["messageType"]),
            dedupe_key=dedupe_key(source.name, env),
            order=ref,
            ignored=f"the {shape} body names no order id" if ref is None else unreachable(source, ref),
        )

    def fetch_orders(self, http: Http, source: Source, ref: OrderRef) -> list[OrderSnapshot]:
        """Re-fetch the announced order: the 1688 order detail where the portal has one, else the lists."""
        paths = PORTALS[source.credentials["portal"]]
        if ref.platform == "1688":
            detail = paths["alibaba_order_detail"]
            if detail and "tbOrderId" in ref.lookup:
                return [_alibaba_detail(http, source, detail, ref)]
            filters = ALIBABA_PAGE_FILTERS[source.credentials["portal"]]
            found = _lookup(http, source, paths["alibaba_order_page"], ref, filters, _alibaba_ids)
            return [_alibaba_order(r) for r in found]
        found = _lookup(http, source, paths["taobao_purchase_page"], ref, TAOBAO_PAGE_FILTERS, _taobao_ids)
        refunds = _taobao_refunds(http, source, found, ref.lookup.get("refundId"))
        return [_taobao_order(r, refunds) for r in found]

    def held_order_ref(
        self, platform: str, provider_order_id: str, order_no: str | None, purchase_id: str | None
    ) -> OrderRef | None:
        """A held order by the ids we keep: the 1688 order number, or the Taobao purchase id."""
        key = "tbOrderId" if platform == "1688" else "purchaseId"
        return OrderRef(platform, provider_order_id, {key: provider_order_id, **({"orderNo": order_no} if order_no else {})})

    def ping(self, http: Http, source: Source) -> str:
        """The cheapest signed read, one record of the 1688 order list: proves the keys and the URL."""
        path = str(PORTALS[source.credentials["portal"]]["alibaba_order_page"])
        total, _ = _page(http, source, path, {"pageNum": 1, "pageSize": 1})
        return f"signed order list call answered ({'?' if total is None else total} order(s))"

    def list_orders(
        self, http: Http, source: Source, since: datetime, until: datetime
    ) -> Iterator[list[OrderSnapshot]]:
        """Page through both platforms' order lists for orders created in the window."""
        paths = PORTALS[source.credentials["portal"]]
        span = (_provider_time(since), _provider_time(until))
        for records in _pages(http, source, str(paths["alibaba_order_page"]), dict(zip(ALIBABA_WINDOW, span, strict=True))):
            yield [_alibaba_order(r) for r in records]
        for records in _pages(http, source, str(paths["taobao_purchase_page"]), dict(zip(TAOBAO_WINDOW, span, strict=True))):
            refunds = _taobao_refunds(http, source, records, None)
            yield [_taobao_order(r, refunds) for r in records]


def _call(http: Http, source: Source, method: str, path: str, **kwargs: Any) -> Any:
    """One signed call; the answer's `data`, or a Transient/PermanentProviderError."""
    creds = source.credentials
    headers = signed_headers(creds["access_key"], creds["access_secret"], creds["user_id"])
    answer = request_json(http, method, source.base_url + path, headers, source.timeout, **kwargs)
    return answer_data(answer, "msg", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)


def _page(
    http: Http, source: Source, path: str, payload: Mapping[str, Any]
) -> tuple[int | None, list[dict[str, Any]]]:
    """One page of a list: (total, records). PandaPon answers it flat, `{total, data, code}`; the
    Thai portal inside the envelope, `{code, msg, data: {total, data, code, msg}}`: both are read."""
    creds = source.credentials
    headers = signed_headers(creds["access_key"], creds["access_secret"], creds["user_id"])
    answer = request_json(http, "POST", source.base_url + path, headers, source.timeout, json=payload)
    page = answer_data(answer, "msg", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)
    if isinstance(page, dict):  # nested: the inner page has a code of its own
        if page.get("code") is not None:
            answer_data(page, "msg", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)
        records, total = page.get("data"), page.get("total")
    else:  # flat: `data` is the list itself
        records, total = page, answer.get("total")
    found = order_records(records, "data")
    return (None if total is None else as_int(total, "total")), found


def _pages(http: Http, source: Source, path: str, filters: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Every record of a list, a page at a time, following `total`."""
    return pages_by_total(
        lambda number, size: _page(http, source, path, {"pageNum": number, "pageSize": size, **filters}), LIST_PAGE_SIZE
    )


def _lookup(
    http: Http,
    source: Source,
    path: str | None,
    ref: OrderRef,
    filters: tuple[str, ...],
    ids_of: Any,
) -> list[dict[str, Any]]:
    """The records of a list that are the announced order, asked by a documented filter and checked
    by every id the push carried, most specific first (one platform order may hold several purchases)."""
    query = {name: ref.lookup[name] for name in filters if name in ref.lookup}
    if not query or path is None:
        raise PermanentProviderError(f"order {ref.order_id}: the push carries no id the {ref.platform} list filters by")
    name, text = next(iter(query.items()))
    value: Any = int(text) if name == "purchaseId" and text.isdigit() else text  # the purchase list documents a number
    _, records = _page(http, source, path, {"pageNum": 1, "pageSize": LOOKUP_PAGE_SIZE, name: value})
    for id_name in MATCH_PREFERENCE:
        wanted = ref.lookup.get(id_name)
        found = [r for r in records if wanted is not None and ids_of(r).get(id_name) == wanted]
        if found:
            return found
    raise PermanentProviderError(f"order {ref.order_id} not found at {source.name}")


def _alibaba_ids(record: Mapping[str, Any]) -> dict[str, str | None]:
    return {"tbOrderId": alibaba.text_id(record.get("tbOrderId")), "orderNo": alibaba.text_id(record.get("orderNo"))}


def _taobao_ids(record: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        "purchaseId": alibaba.text_id(record.get("purchaseId")),
        "orderNo": alibaba.text_id(record.get("orderNo")),
        "outerPurchaseId": alibaba.text_id(record.get("purchaseOrderOuterId")),
    }


def _alibaba_detail(http: Http, source: Source, path: str, ref: OrderRef) -> OrderSnapshot:
    """A 1688 order through `/alibaba/order/detail`: 1688's own model, in the envelope."""
    model = _call(http, source, "POST", path, json={"webSite": ALIBABA_WEBSITE, "orderId": ref.lookup["tbOrderId"]})
    if not isinstance(model, dict) or not isinstance(model.get("baseInfo"), dict):
        raise PermanentProviderError(f"order {ref.order_id} not found at {source.name}")
    snapshot = alibaba.order_snapshot(model)
    if snapshot.provider_order_id != ref.lookup["tbOrderId"]:
        if not alibaba.same_double(model["baseInfo"], ref.lookup["tbOrderId"]):
            raise PermanentProviderError(f"order detail for {ref.order_id} answered order {snapshot.provider_order_id}")
        # No idOfStr, and the numeric id is ours as a double rounds it: the order asked for.
        snapshot = dataclasses.replace(snapshot, provider_order_id=ref.lookup["tbOrderId"])
    # 1688's model has no platform order number; the push may have named it.
    return dataclasses.replace(snapshot, order_no=snapshot.order_no or ref.lookup.get("orderNo"))


def _taobao_refunds(
    http: Http, source: Source, records: list[dict[str, Any]], pushed: str | None
) -> dict[str, dict[str, Any]]:
    """The refund cases of these purchases' sub-orders (and the pushed one), by refund id, from the
    after-sales query: the purchase list shows a refund's state but not what it refunded."""
    path = PORTALS[source.credentials["portal"]]["taobao_refund_query"]
    wanted = {alibaba.text_id(s.get("refundId")) for r in records for s in r.get("subOrderVOS") or [] if isinstance(s, dict)}
    wanted.add(pushed)
    wanted.discard(None)
    refunds: dict[str, dict[str, Any]] = {}
    for refund_id in sorted(w for w in wanted if w):
        try:
            data = _call(http, source, "GET", str(path), params={"refundId": refund_id})
        except PermanentProviderError as err:
            # The query is marked "in development" in the docs: without it the list's own state
            # stands, rather than the whole order failing.
            log.warning("refetch.refund_query_failed source=%s refund=%s error=%s", source.name, refund_id, err)
            continue
        aggregate = data.get("refundOrderAggregate") if isinstance(data, dict) else None
        if isinstance(aggregate, dict) and isinstance(aggregate.get("refundOrder"), dict):
            refunds[refund_id] = aggregate
    return refunds


def _provider_time(moment: datetime) -> str:
    """A time as the list APIs take it: "YYYY-MM-DD HH:MM:SS" on the provider's clock."""
    return moment.astimezone(INFERRED_PROVIDER_TZ).strftime("%Y-%m-%d %H:%M:%S")


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


def _alibaba_status(raw: Any) -> str:
    """A page status as 1688 names it; a code outside the documented ones stays a number."""
    code = as_int(raw, "orderStatus")
    return ALIBABA_STATUS_NAMES.get(code, str(code))


def _alibaba_line_ids(details: list[dict[str, Any]]) -> list[str]:
    """Each line's id: its 1688 sub-order id, unless two lines share one (then the page's own)."""
    subs = [alibaba.text_id(d.get(INFERRED_LINE_ID_KEY)) for d in details]
    if None in subs or len(set(subs)) != len(subs):
        return [str(d.get("id")) for d in details]
    return [str(s) for s in subs]


def _alibaba_order(r: Mapping[str, Any]) -> OrderSnapshot:
    """A 1688 order record of `/alibaba/order/page` as our order: amounts in fen, statuses as 1688's."""
    tb_order_id = alibaba.text_id(r.get("tbOrderId"))
    if tb_order_id is None:
        raise PermanentProviderError("1688 order record has no tbOrderId")
    raw_status = _alibaba_status(r.get("orderStatus"))
    details = [d for d in r.get("orderDetailInfoVOS") or [] if isinstance(d, dict)]
    lines = tuple(
        LineSnapshot(
            line_id=line_id,
            product_id=alibaba.text_id(d.get("productId")),
            sku_id=alibaba.text_id(d.get("skuId")),
            title=d.get("name"),
            quantity=as_int(d.get("quantity"), "quantity"),
            price=as_int(d.get("price"), "price"),
            amount=as_int(d.get("itemAmount"), "itemAmount"),
            refund_amount=as_int(d.get("refund"), "refund"),
            raw_status=None if d.get("status") is None else _alibaba_status(d.get("status")),
        )
        for line_id, d in zip(_alibaba_line_ids(details), details, strict=True)
    )
    return OrderSnapshot(
        platform="1688",
        provider_order_id=tb_order_id,
        order_no=alibaba.text_id(r.get("orderNo")),
        purchase_id=None,
        status=alibaba.normalised_status(raw_status)[0],
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


def _taobao_refund(sub: Mapping[str, Any], result: Mapping[str, Any], refunds: Mapping[str, Mapping[str, Any]]) -> int | None:
    """What the after-sales query says a sub-order got back, in fen; None when it knows no case of it."""
    refund_id = alibaba.text_id(sub.get("refundId"))
    case = refunds.get(refund_id) if refund_id else None
    if case is None:
        # A pushed refund the list does not link yet: matched by its purchase line.
        line_id = alibaba.text_id(result.get("sub_purchase_order_id"))
        case = next(
            (
                c
                for c in refunds.values()
                if line_id and alibaba.text_id((c.get("purchaseOrderLine") or {}).get("purchaseOrderLineId")) == line_id
            ),
            None,
        )
    if case is None:
        return None
    order = case["refundOrder"]
    if as_int(order.get("refundStatus"), "refundStatus") != TAOBAO_REFUNDED:
        return 0
    return as_int(order.get(INFERRED_REFUND_FEE_KEY), INFERRED_REFUND_FEE_KEY)


def _taobao_line(sub: Mapping[str, Any], refunds: Mapping[str, Mapping[str, Any]]) -> LineSnapshot:
    result = _json_field(sub.get("subOrderResult")) or _json_field(sub.get("createSubOrderResult"))
    quantity = as_int(result.get("quantity"), "quantity") or 1
    amount = as_int(result.get("purchase_amount", result.get("estimate_amount")), "purchase_amount")
    refund = _taobao_refund(sub, result, refunds)
    if refund is None:  # no case the query knows: the list's own state, in full when refunded
        refund = amount if as_int(sub.get("refundStatus"), "refundStatus") == TAOBAO_REFUNDED else 0
    return LineSnapshot(
        line_id=str(sub.get("id")),
        product_id=alibaba.text_id(result.get("item_id")),
        sku_id=alibaba.text_id(result.get("sku_id")),
        title=result.get("title"),
        quantity=quantity,
        price=amount // quantity,
        amount=amount,
        refund_amount=refund,
        raw_status=sub.get("subOrderStatus"),
    )


def _taobao_order(r: Mapping[str, Any], refunds: Mapping[str, Mapping[str, Any]]) -> OrderSnapshot:
    """A Taobao purchase record of `/open/purchase/page` as our order: one purchase is one order."""
    purchase_id = alibaba.text_id(r.get("purchaseId"))
    if purchase_id is None:
        raise PermanentProviderError("Taobao purchase record has no purchaseId")
    code = as_int(r.get("status"), "status")
    subs = [s for s in r.get("subOrderVOS") or [] if isinstance(s, dict)]
    lines = tuple(_taobao_line(s, refunds) for s in subs)
    product = sum(line.amount for line in lines)
    shipping = sum(as_int(_json_field(s.get("subOrderResult")).get("domestic_post_fee"), "domestic_post_fee") for s in subs)
    total = as_int(r.get("purchaseAmount"), "purchaseAmount")
    return OrderSnapshot(
        platform="taobao",
        provider_order_id=purchase_id,
        order_no=alibaba.text_id(r.get("orderNo")),
        purchase_id=purchase_id,
        status=TAOBAO_STATUS.get(code, "other"),
        raw_status=str(code),
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
