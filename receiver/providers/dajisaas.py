"""The DajiSaaS family: 1688 trade messages and Taobao/Tmall messages, forwarded as signed form
posts, and 1688's orders read back through DajiSaaS's signed API.

Everything the service knows about DajiSaaS's pushes, API and order JSON is here, as data where it
can be (1688's order model itself is in `alibaba`). Sources: shared/provider-docs/PUBLISHED-DOCS.md
section 2 (outside this repository). Names starting with INFERRED_ mark what the provider does not document and we chose;
where a real account might differ, a per-source option in `CredentialsSchema` lets it be changed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, quote_plus

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from receiver.errors import BadSignature, MalformedPush, PermanentProviderError, ProviderError
from receiver.providers import (
    CHINA_TIME,
    Http,
    OrderRef,
    OrderSnapshot,
    Push,
    PushAuth,
    RawPush,
    Source,
    answer_data,
    first_field,
    has_control,
    loader,
    order_records,
    pages_by_total,
    plain_text,
    post_json,
)
from receiver.providers.alibaba import PLATFORM, TOPIC_KINDS, order_snapshot, record_id, same_double, text_id

if TYPE_CHECKING:
    pass

log = logging.getLogger("receiver.providers.dajisaas")

NAME = "dajisaas"
TAOBAO = "taobao"

# --- API ----------------------------------------------------------------------------------------
# One order: "查询订单详情" (wiki.dajisaas.com/api-164891585). The list is for reconciliation and ping.
BUYER_VIEW_PATH = "/alibaba/trade/get/buyerView"
ORDER_LIST_PATH = "/alibaba/trade/getBuyerOrderList"
WEBSITE = "1688"
SUCCESS_CODE = 200
# The list's page size limit is not documented: we ask for a size a server is unlikely to cut, and
# page on `totalRecord` anyway, so a smaller cap only costs more pages.
INFERRED_LIST_PAGE_SIZE = 20
# Answer codes worth retrying: the provider documents none, so "too many requests" and the 5xx
# range are transient like their HTTP namesakes.
INFERRED_TRANSIENT_CODES = frozenset({429, *range(500, 600)})
# "正式用sign签名": MD5, upper-case hex, of the parameters sorted by key as k=v joined by &, then
# "&secret=<appSecret>", nulls left out (client code citing wiki doc-4543198). Which body fields
# the POST-JSON variant signs is not written anywhere we could read: we sign every top-level scalar
# one, `appSecret` (the secret itself, when a debug source sends it) and `sign` excepted.
SIGN_FIELD = "sign"
INFERRED_UNSIGNED_FIELDS = frozenset({SIGN_FIELD, "appSecret"})
# The POST-JSON variant adds `requestTime`; its unit is not documented: milliseconds, like the
# answers' own `timestamp`.
INFERRED_REQUEST_TIME_FIELD = "requestTime"
# A provider's error text goes to events.last_error, logs and alerts: this long at most.
MAX_ERROR_TEXT = 300
SCRUBBED = "***"

# --- pushes -------------------------------------------------------------------------------------
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MESSAGE_FIELD = "message"
SIGNATURE_FIELD = "_dj_signature"
# A type outside the list that still names an order is re-fetched all the same, as this kind.
UNLISTED_KIND = "other"
ORDER_ID_KEY = "orderId"
# 1688 ids are 19 digits at most; anything much longer is not an id (and would not fit the inbox).
MAX_ID_LENGTH = 64
# 1688's topic pages put these messages' orders in a list inside `data` instead of data.orderId;
# that DajiSaaS forwards them unchanged is inferred. A push names one order: we take the first.
INFERRED_ORDER_LISTS = (
    ("batchPay",),
    ("OrderLogisticsTracingModel", "orderLogsItems"),
    ("MailNoChangeModel", "orderLogsItems"),
)
# DajiSaaS's Taobao/Tmall messages (wiki-en.dajisaas.com/doc-4966230): `message_type` 3 is a status
# update naming data.purchase_id, 8 a price change naming data.purchaseOrderId. Our names for them:
TAOBAO_TYPES = {3: ("TAOBAO_ORDER_STATUS_UPDATE", "status"), 8: ("TAOBAO_PRICE_CHANGE", "price")}
TAOBAO_ID_KEYS = ("purchase_id", "purchaseOrderId")
TAOBAO_KEPT_KEYS = ("outer_purchase_id", "salesOrderId", "status")
TAOBAO_IGNORED = "Taobao/Tmall message: DajiSaaS documents no Taobao order query"
# Taobao messages carry no message id: a redelivery is recognised by these envelope and data fields.
INFERRED_TAOBAO_DEDUPE = ("seller_id", "message_type", "timestamp", "data.business_time", "data.status")


# --- the API's `sign` ---------------------------------------------------------------------------
def _sign_value(value: Any) -> str:
    """A parameter's value as it is written into the signed text."""
    if isinstance(value, bool):
        return "true" if value else "false"  # as Java, the provider's language, writes it
    return str(value)


def api_sign_text(params: Mapping[str, Any], secret: str) -> str:
    """The text `sign` hashes: sorted `k=v` pairs joined by `&`, then `&secret=<appSecret>`."""
    pairs = [
        f"{key}={_sign_value(value)}"
        for key, value in sorted(params.items())
        if key not in INFERRED_UNSIGNED_FIELDS and value is not None and not isinstance(value, (dict, list))
    ]
    return "&".join(pairs) + "&secret=" + secret


def api_sign(params: Mapping[str, Any], secret: str) -> str:
    """The API's `sign`: upper-case hex MD5 of `api_sign_text`."""
    return hashlib.md5(api_sign_text(params, secret).encode()).hexdigest().upper()


def signed_body(source: Source, params: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """A request body: the parameters, appKey, requestTime and sign; appSecret only for a debug source."""
    creds = source.credentials
    body: dict[str, Any] = {"appKey": creds["app_key"], **params}
    body[INFERRED_REQUEST_TIME_FIELD] = now_ms if now_ms is not None else int(time.time() * 1000)
    body[SIGN_FIELD] = api_sign(body, creds["app_secret"])
    if creds.get("send_app_secret"):
        # The docs keep appSecret in the body for debugging only: a source must ask for it.
        body["appSecret"] = creds["app_secret"]
    return body


def scrub(text: str, source: Source) -> str:
    """Provider text fit for logs and the inbox: every configured secret masked, the length capped."""
    for name, value in source.credentials.items():
        if "secret" in name and isinstance(value, str) and value:
            for form in {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}:
                text = text.replace(form, SCRUBBED)
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def _call(http: Http, source: Source, path: str, params: Mapping[str, Any]) -> Any:
    """POST a signed request and return the answer's `data`; errors carry no secret."""
    try:
        answer = post_json(http, source.base_url + path, signed_body(source, params), {}, source.timeout)
        data = answer_data(answer, "message", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)
        if isinstance(data, dict) and data.get("errorCode"):
            # 1688's own error, passed through under a DajiSaaS success.
            raise PermanentProviderError(f"1688 error {data['errorCode']}: {data.get('errorMessage')}")
    except ProviderError as err:
        raise type(err)(scrub(err.message, source)) from None
    return data


# --- the push's `_dj_signature` -----------------------------------------------------------------
def _hex_upper(digest: bytes) -> str:
    return digest.hex().upper()


def _hex_lower(digest: bytes) -> str:
    return digest.hex()


def _base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# "HmacSHA1" is all the docs say (wiki.dajisaas.com/doc-5787639). The candidates of PUBLISHED-DOCS
# 2b, all keyed with the app secret: the message value alone, or "message" + value as 1688's own
# `_aop_signature` signs a one-field push; each written three ways. A source may pin one.
INFERRED_SIGNED_TEXTS: dict[str, Callable[[str], str]] = {
    "value": lambda message: message,
    "name-value": lambda message: MESSAGE_FIELD + message,
}
INFERRED_ENCODINGS: dict[str, Callable[[bytes], str]] = {"hex-upper": _hex_upper, "hex-lower": _hex_lower, "base64": _base64}
SIGNATURE_SCHEMES = {
    f"{text}-{encoding}": (signed_text, encode)
    for text, signed_text in INFERRED_SIGNED_TEXTS.items()
    for encoding, encode in INFERRED_ENCODINGS.items()
}
ANY_SCHEME = "any"
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


def sign(secret: str, message: str, scheme: str = "name-value-hex-upper") -> str:
    """`_dj_signature` of a message under one candidate scheme: HMAC-SHA1 keyed by the app secret."""
    signed_text, encode = SIGNATURE_SCHEMES[scheme]
    return encode(hmac.new(secret.encode(), signed_text(message).encode(), hashlib.sha1).digest())


def matching_scheme(secret: str, message: str, given: str, schemes: tuple[str, ...] = tuple(SIGNATURE_SCHEMES)) -> str | None:
    """The first scheme under which `given` is the message's signature, or None."""
    # A sender that did not percent-encode a base64 "+" has it read back as a space.
    candidates = {given, given.replace(" ", "+")}
    for scheme in schemes:
        expected = sign(secret, message, scheme).encode()
        if any(hmac.compare_digest(expected, c.encode()) for c in candidates):
            return scheme
    return None


def _report_scheme(source: Source, scheme: str) -> None:
    """Log, once per source and process, which candidate the provider's signatures match."""
    with _reported_lock:
        if (source.name, scheme) in _reported:
            return
        _reported.add((source.name, scheme))
    log.info("callback.signature_scheme source=%s scheme=%s", source.name, scheme)


# --- schemas ------------------------------------------------------------------------------------
class CredentialsSchema(Schema):
    """The keys of a DajiSaaS source besides the common ones."""

    class Meta:
        unknown = "raise"

    app_key = fields.String(required=True, validate=validate.Length(min=1))
    app_secret = fields.String(required=True, validate=validate.Length(min=1))
    # Which `_dj_signature` candidate to accept: "any" until a real push showed which (the log says).
    signature_scheme = fields.String(load_default=ANY_SCHEME, validate=validate.OneOf([ANY_SCHEME, *SIGNATURE_SCHEMES]))
    # Debug only, as the docs say: also put appSecret in the API request bodies.
    send_app_secret = fields.Boolean(load_default=False)


class _TextId(fields.Field):
    """An id that 1688 sends as a number or a string: kept as a string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = text_id(value)
        if text is None or len(text) > MAX_ID_LENGTH:
            raise ValidationError(f"must be a number or a non-empty string of at most {MAX_ID_LENGTH} characters")
        plain_text(text)
        return text


class MessageSchema(Schema):
    """A 1688 message: `{msgId, gmtBorn, type, userInfo, data}`; we read the id, type and data."""

    class Meta:
        unknown = EXCLUDE

    msgId = _TextId(required=True)
    type = fields.String(required=True, validate=[validate.Length(min=1, max=128), plain_text])
    data = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)


class TaobaoMessageSchema(Schema):
    """A DajiSaaS Taobao/Tmall message: `{seller_id, message_type, data, timestamp (s), site}`."""

    class Meta:
        unknown = EXCLUDE

    seller_id = _TextId(load_default=None)
    message_type = fields.Integer(required=True, strict=True)
    data = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)
    timestamp = fields.Integer(load_default=None, allow_none=True)
    site = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))


MESSAGE = MessageSchema()  # reused: building a schema per push costs more than the load
TAOBAO_MESSAGE = TaobaoMessageSchema()
LOADERS = {MESSAGE: loader(MESSAGE), TAOBAO_MESSAGE: loader(TAOBAO_MESSAGE)}


def _form(raw: RawPush) -> dict[str, str]:
    """The posted form's fields, each given once; blank fields count as absent."""
    if raw.content_type.split(";", 1)[0].strip().lower() != FORM_CONTENT_TYPE:
        raise MalformedPush(f"body must be {FORM_CONTENT_TYPE}", field="body")
    try:
        parsed = parse_qs(raw.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError included
        raise MalformedPush("form is not valid UTF-8", field="body") from None
    form: dict[str, str] = {}
    for name, values in parsed.items():
        if len(values) > 1:
            raise MalformedPush(f"form field {name} given more than once", field=name)
        if values[0]:
            form[name] = values[0]
    return form


def message_kind(message_type: str) -> str:
    """The kind of change a 1688 message type announces."""
    return TOPIC_KINDS.get(message_type, UNLISTED_KIND)


def message_order_id(data: Mapping[str, Any]) -> str | None:
    """The 1688 order id a message's `data` names, or None."""
    if (found := text_id(data.get(ORDER_ID_KEY))) is not None:
        return found
    for path in INFERRED_ORDER_LISTS:
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        items = node if isinstance(node, list) else [node]
        if items and isinstance(items[0], dict) and (found := text_id(items[0].get(ORDER_ID_KEY))) is not None:
            return found
    return None


def _load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return LOADERS[schema](data)
    except ValidationError as err:
        field = first_field(err, "message")
        raise MalformedPush(f"{field}: {err.normalized_messages()[field]}", field=f"{MESSAGE_FIELD}.{field}") from None


def _dedupe_key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _trade_push(source: Source, data: dict[str, Any]) -> Push:
    """A 1688 trade message: re-fetch the order it names, whatever its type."""
    msg = _load(MESSAGE, data)
    order_id = message_order_id(msg["data"] or {})
    if order_id is not None and (len(order_id) > MAX_ID_LENGTH or has_control(order_id)):
        raise MalformedPush(
            "message orderId is too long or holds a control character", field=f"{MESSAGE_FIELD}.data.{ORDER_ID_KEY}"
        )
    return Push(
        message_type=msg["type"],
        kind=message_kind(msg["type"]),
        dedupe_key=_dedupe_key(source.name, msg["msgId"]),
        order=OrderRef(PLATFORM, order_id) if order_id else None,
        ignored=None if order_id else f"message type {msg['type']} names no order",
    )


def _taobao_push(source: Source, data: dict[str, Any]) -> Push:
    """A Taobao/Tmall message: stored with its purchase id, never re-fetched (no documented query)."""
    msg = _load(TAOBAO_MESSAGE, data)
    body = msg["data"] or {}
    name, kind = TAOBAO_TYPES.get(msg["message_type"], (f"TAOBAO_MESSAGE_{msg['message_type']}", "other"))
    purchase_id = next((t for k in TAOBAO_ID_KEYS if (t := text_id(body.get(k))) is not None), None)
    if purchase_id is not None and (len(purchase_id) > MAX_ID_LENGTH or has_control(purchase_id)):
        raise MalformedPush(
            "message purchase id is too long or holds a control character", field=f"{MESSAGE_FIELD}.data.{TAOBAO_ID_KEYS[0]}"
        )
    kept = {k: str(body[k])[:MAX_ID_LENGTH] for k in TAOBAO_KEPT_KEYS if body.get(k) not in (None, "")}
    if msg["site"]:
        kept["site"] = msg["site"]
    envelope = {**msg, **{f"data.{k}": v for k, v in body.items()}}
    return Push(
        message_type=name,
        kind=kind,
        dedupe_key=_dedupe_key(
            source.name, TAOBAO, purchase_id or "", *(str(envelope.get(k, "")) for k in INFERRED_TAOBAO_DEDUPE)
        ),
        order=OrderRef(TAOBAO, purchase_id, kept) if purchase_id else None,
        ignored=TAOBAO_IGNORED,
    )


class DajisaasFamily:
    """The family's implementation of the provider seam."""

    push_headers: tuple[str, ...] = ()  # its pushes are signed in the form body

    name = NAME

    def credentials_schema(self) -> Schema:
        return CredentialsSchema()

    def authenticate(self, source: Source, raw: RawPush) -> PushAuth:
        """Check `_dj_signature` against the candidate schemes; no timestamp window or nonce, since
        1688 re-sends old messages."""
        form = _form(raw)
        if MESSAGE_FIELD not in form:
            raise MalformedPush("form has no message", field=MESSAGE_FIELD)
        given = form.get(SIGNATURE_FIELD)
        if given is None:
            raise BadSignature(f"form has no {SIGNATURE_FIELD}")
        pinned = source.credentials.get("signature_scheme", ANY_SCHEME)
        schemes = tuple(SIGNATURE_SCHEMES) if pinned == ANY_SCHEME else (pinned,)
        scheme = matching_scheme(source.credentials["app_secret"], form[MESSAGE_FIELD], given, schemes)
        if scheme is None:
            raise BadSignature("signature does not verify")
        _report_scheme(source, scheme)
        return PushAuth()

    def parse_push(self, source: Source, raw: RawPush) -> Push:
        """Validate the message JSON, 1688's or Taobao's envelope, and find the order it names."""
        form = _form(raw)
        if MESSAGE_FIELD not in form:
            raise MalformedPush("form has no message", field=MESSAGE_FIELD)
        try:
            data = json.loads(form[MESSAGE_FIELD])
        except (ValueError, RecursionError):
            raise MalformedPush("message is not valid JSON", field=MESSAGE_FIELD) from None
        if not isinstance(data, dict):
            raise MalformedPush("message must be a JSON object", field=MESSAGE_FIELD)
        if "message_type" in data and "type" not in data:
            return _taobao_push(source, data)
        return _trade_push(source, data)

    def fetch_orders(self, http: Http, source: Source, ref: OrderRef) -> list[OrderSnapshot]:
        """Re-fetch one 1688 order through buyerView."""
        if ref.platform != PLATFORM:
            raise PermanentProviderError(f"{ref.platform} order {ref.order_id}: {TAOBAO_IGNORED}")
        record = _call(http, source, BUYER_VIEW_PATH, {"webSite": WEBSITE, "orderId": ref.order_id})
        if not isinstance(record, dict) or not isinstance(record.get("baseInfo"), dict):
            raise PermanentProviderError(f"order {ref.order_id} not found at {source.name}")
        snap = order_snapshot(record)
        if snap.provider_order_id != ref.order_id:
            if not same_double(record["baseInfo"], ref.order_id):
                raise PermanentProviderError(f"asked for order {ref.order_id}, {source.name} answered {snap.provider_order_id}")
            # No idOfStr, and the numeric id is ours as a double would round it: the order we asked for.
            snap = replace(snap, provider_order_id=ref.order_id)
        return [snap]

    def held_order_ref(
        self, platform: str, provider_order_id: str, order_no: str | None, purchase_id: str | None
    ) -> OrderRef | None:
        """A held 1688 order by its order id; a Taobao one cannot be asked for (no documented query)."""
        return OrderRef(PLATFORM, provider_order_id) if platform == PLATFORM else None

    def ping(self, http: Http, source: Source) -> str:
        """The cheapest signed read, one record of the buyer order list: proves the keys and the URL."""
        page = _call(http, source, ORDER_LIST_PATH, {"page": 1, "pageSize": 1})
        total = page.get("totalRecord", "?") if isinstance(page, dict) else "?"
        return f"keyed order list call answered, sign accepted ({total} order(s))"

    def list_orders(
        self, http: Http, source: Source, since: datetime, until: datetime
    ) -> Iterator[list[OrderSnapshot]]:
        """Page through the buyer order list for orders created in the window, up to `totalRecord`."""

        def fetch(number: int, size: int) -> tuple[int | None, list[dict[str, Any]]]:
            window = {"createStartTime": _list_time(since), "createEndTime": _list_time(until)}
            page = _call(http, source, ORDER_LIST_PATH, {**window, "page": number, "pageSize": size})
            if not isinstance(page, dict):
                return None, order_records(None, "data.result")
            total = page.get("totalRecord")
            return (total if isinstance(total, int) else None), order_records(page.get("result"), "data.result")

        for records in pages_by_total(fetch, INFERRED_LIST_PAGE_SIZE):
            if snaps := _snapshots(source, records):
                yield snaps


def _snapshots(source: Source, records: list[dict[str, Any]]) -> list[OrderSnapshot]:
    """A page's orders; a record we cannot read is logged and skipped, not the page."""
    snaps = []
    for r in records:
        try:
            snaps.append(order_snapshot(r))
        except PermanentProviderError as err:
            log.warning("reconcile.unreadable_order source=%s order=%s error=%s", source.name, record_id(r), err.message)
    return snaps


def _list_time(moment: datetime) -> str:
    """A time as the order list takes it (see the 004 doc's example): yyyyMMddHHmmssSSS+0800."""
    china = moment.astimezone(CHINA_TIME)
    return china.strftime("%Y%m%d%H%M%S") + f"{china.microsecond // 1000:03d}+0800"


FAMILY = DajisaasFamily()
