"""The DajiSaaS family: 1688's trade messages, forwarded as signed form posts, and 1688's order list.

Everything the service knows about DajiSaaS's pushes, API and order JSON is here, as data where it
can be. Names starting with INFERRED_ mark what the provider does not document and we chose.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from urllib.parse import parse_qs

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from receiver.errors import BadSignature, MalformedPush, PermanentProviderError
from receiver.providers.alibaba import PLATFORM, order_snapshot, record_id, text_id
from receiver.providers import (
    MAX_PAGES,
    OrderRef,
    OrderSnapshot,
    Push,
    PushAuth,
    RawPush,
    answer_data,
    first_field,
    order_records,
    post_json,
)

if TYPE_CHECKING:
    import requests

    from receiver.config import Source

NAME = "dajisaas"

# --- API ----------------------------------------------------------------------------------------
ORDER_LIST_PATH = "/alibaba/trade/getBuyerOrderList"
SUCCESS_CODE = 200
PAGE_SIZE = 20
LIST_PAGE_SIZE = 50
# The documented request filters by time, status, outOrderId and product name, never by the 1688
# order id; we send the id under the name 1688 messages give it, and check every answer ourselves.
INFERRED_ORDER_FILTER = "orderId"
# Answer codes worth retrying: the provider documents none, so "too many requests" and the 5xx
# range are transient like their HTTP namesakes.
INFERRED_TRANSIENT_CODES = frozenset({429, *range(500, 600)})

# --- pushes -------------------------------------------------------------------------------------
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MESSAGE_FIELD = "message"
SIGNATURE_FIELD = "_dj_signature"
MESSAGE_KINDS = {
    "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY": "price",
    "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES": "refund",
    "ORDER_BUYER_VIEW_ORDER_REFUND_AFTER_SALES": "refund",
}
# Every other trade message may move the order along; logistics messages change no status we hold
# but are re-fetched all the same. Anything else is stored and acknowledged only.
PREFIX_KINDS = (("ORDER_", "status"), ("LOGISTICS_", "logistics"))
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


# --- signing ------------------------------------------------------------------------------------
def signed_text(message: str) -> str:
    """The text `_dj_signature` signs, from the `message` field's value as it was posted."""
    # Inferred: the signing page was not readable. This follows 1688's own `_aop_signature` scheme
    # for pushes (each form field's name then its value, the signature itself left out), which for
    # a one-field form is "message" + value. If a real push disagrees, this is the one line to edit.
    return MESSAGE_FIELD + message


def sign(secret: str, message: str) -> str:
    """The family's push signature: upper-case hex HMAC-SHA1 of the signed text, keyed by the app secret."""
    return hmac.new(secret.encode(), signed_text(message).encode(), hashlib.sha1).hexdigest().upper()


# --- schemas ------------------------------------------------------------------------------------
class CredentialsSchema(Schema):
    """The keys of a DajiSaaS source besides the common ones."""

    class Meta:
        unknown = "raise"

    app_key = fields.String(required=True, validate=validate.Length(min=1))
    app_secret = fields.String(required=True, validate=validate.Length(min=1))


class _TextId(fields.Field):
    """An id that 1688 sends as a number or a string: kept as a string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = text_id(value)
        if text is None or len(text) > MAX_ID_LENGTH:
            raise ValidationError(f"must be a number or a non-empty string of at most {MAX_ID_LENGTH} characters")
        return text


class MessageSchema(Schema):
    """A 1688 message: `{msgId, gmtBorn, type, userInfo, data}`; we read the id, type and data."""

    class Meta:
        unknown = EXCLUDE

    msgId = _TextId(required=True)
    type = fields.String(required=True, validate=validate.Length(min=1, max=128))
    data = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)


MESSAGE = MessageSchema()  # reused: building a schema per push costs more than the load




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


def message_kind(message_type: str) -> str | None:
    """The kind of a 1688 message type, or None for a type we do not act on."""
    if message_type in MESSAGE_KINDS:
        return MESSAGE_KINDS[message_type]
    return next((kind for prefix, kind in PREFIX_KINDS if message_type.startswith(prefix)), None)


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


class DajisaasFamily:
    """The family's implementation of the provider seam."""

    name = NAME

    def credentials_schema(self) -> Schema:
        return CredentialsSchema()

    def authenticate(self, source: Source, raw: RawPush) -> PushAuth:
        """Check `_dj_signature`; no timestamp window or nonce, since 1688 re-sends old messages."""
        form = _form(raw)
        if MESSAGE_FIELD not in form:
            raise MalformedPush("form has no message", field=MESSAGE_FIELD)
        given = form.get(SIGNATURE_FIELD)
        if given is None:
            raise BadSignature(f"form has no {SIGNATURE_FIELD}")
        expected = sign(source.credentials["app_secret"], form[MESSAGE_FIELD])
        if not hmac.compare_digest(given.upper().encode(), expected.encode()):
            raise BadSignature("signature does not verify")
        return PushAuth()

    def parse_push(self, source: Source, raw: RawPush) -> Push:
        """Validate the message JSON and find the order it names; the message id is the dedupe key."""
        form = _form(raw)
        if MESSAGE_FIELD not in form:
            raise MalformedPush("form has no message", field=MESSAGE_FIELD)
        try:
            data = json.loads(form[MESSAGE_FIELD])
        except (ValueError, RecursionError):
            raise MalformedPush("message is not valid JSON", field=MESSAGE_FIELD) from None
        if not isinstance(data, dict):
            raise MalformedPush("message must be a JSON object", field=MESSAGE_FIELD)
        try:
            msg = MESSAGE.load(data)
        except ValidationError as err:
            field = first_field(err, "message")
            raise MalformedPush(f"{field}: {err.messages[field]}", field=f"{MESSAGE_FIELD}.{field}") from None
        kind = message_kind(msg["type"])
        order_id = message_order_id(msg["data"] or {})
        if kind is not None and order_id is None:
            raise MalformedPush("message data has no orderId", field=f"{MESSAGE_FIELD}.data.{ORDER_ID_KEY}")
        if order_id is not None and len(order_id) > MAX_ID_LENGTH:
            raise MalformedPush("message orderId is too long", field=f"{MESSAGE_FIELD}.data.{ORDER_ID_KEY}")
        key = "|".join([source.name, msg["msgId"]])
        return Push(
            message_type=msg["type"],
            kind=kind or "other",
            dedupe_key=hashlib.sha256(key.encode()).hexdigest(),
            # Unknown types are stored and acknowledged; we still note the order if one is named.
            order=OrderRef(PLATFORM, order_id, {INFERRED_ORDER_FILTER: order_id}) if order_id else None,
            ignored=None if kind else f"message type {msg['type']} is not acted on",
        )

    def fetch_orders(self, http: requests.Session, source: Source, ref: OrderRef) -> list[OrderSnapshot]:
        """Re-fetch the order through the buyer order list, filtered to it, keys in the body."""
        creds = source.credentials
        payload = {
            "appKey": creds["app_key"],
            "appSecret": creds["app_secret"],
            INFERRED_ORDER_FILTER: ref.lookup[INFERRED_ORDER_FILTER],
            "page": 1,
            "pageSize": PAGE_SIZE,
        }
        answer = post_json(http, source.base_url + ORDER_LIST_PATH, payload, {}, source.timeout)
        # List filters are a courtesy we do not rely on: only the asked-for record is read.
        found = [order_snapshot(r) for r in _result_records(answer) if record_id(r) == ref.order_id]
        if not found:
            raise PermanentProviderError(f"order {ref.order_id} not found at {source.name}")
        return found

    def ping(self, http: requests.Session, source: Source) -> str:
        """The cheapest keyed read, one record of the buyer order list: proves the keys and the URL."""
        creds = source.credentials
        payload = {"appKey": creds["app_key"], "appSecret": creds["app_secret"], "page": 1, "pageSize": 1}
        answer = post_json(http, source.base_url + ORDER_LIST_PATH, payload, {}, source.timeout)
        _result_records(answer)
        return f"keyed order list call answered ({answer['data'].get('totalRecord', '?')} order(s))"

    def list_orders(
        self, http: requests.Session, source: Source, since: datetime, until: datetime
    ) -> Iterator[list[OrderSnapshot]]:
        """Page through the buyer order list for orders created in the window."""
        creds = source.credentials
        for page in range(1, MAX_PAGES + 1):
            payload = {
                "appKey": creds["app_key"],
                "appSecret": creds["app_secret"],
                "createStartTime": _list_time(since),
                "createEndTime": _list_time(until),
                "page": page,
                "pageSize": LIST_PAGE_SIZE,
            }
            records = _result_records(post_json(http, source.base_url + ORDER_LIST_PATH, payload, {}, source.timeout))
            if records:
                yield [order_snapshot(r) for r in records]
            if len(records) < LIST_PAGE_SIZE:
                break


def _list_time(moment: datetime) -> str:
    """A time as the order list takes it (see the 004 doc's example): yyyyMMddHHmmssSSS+0800."""
    china = moment.astimezone(timezone(timedelta(hours=8)))
    return china.strftime("%Y%m%d%H%M%S") + f"{china.microsecond // 1000:03d}+0800"


def _result_records(answer: Any) -> list[dict[str, Any]]:
    """The records of a `{code, message, data: {result: [...], totalRecord}}` answer; raise on an error code."""
    page = answer_data(answer, "message", INFERRED_TRANSIENT_CODES, SUCCESS_CODE)
    if isinstance(page, dict) and page.get("errorCode"):
        # 1688's own error, passed through under a DajiSaaS success.
        raise PermanentProviderError(f"1688 error {page['errorCode']}: {page.get('errorMessage')}")
    return order_records(page.get("result") if isinstance(page, dict) else None, "data.result")


FAMILY = DajisaasFamily()
