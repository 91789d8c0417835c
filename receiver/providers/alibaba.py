"""1688's own order model (`baseInfo`, `productItems`, ...), as both families' APIs answer it.

DajiSaaS's buyerView and order list, and the Xportcn family's `/alibaba/order/detail`, pass 1688's
order through: yuan decimals, status strings, ids as numbers and as strings. This module maps it to
our order; the families keep their own envelopes, paths and signing.

An order is never refused for an odd field: an amount we cannot read counts as 0 and is logged, a
fraction of a fen is rounded, a line without an id gets a derived key. Only an order without an id
is an error, since we could not say which order it is.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from receiver.errors import PermanentProviderError
from receiver.providers import CHINA_TIME, LineSnapshot, OrderSnapshot

log = logging.getLogger("receiver.providers.alibaba")

PLATFORM = "1688"

# 1688's buyer-view trade topics (shared/provider-docs/PUBLISHED-DOCS.md 2a, outside this
# repository, from the open.1688.com topic list) and the kind of change each announces, whichever
# family relays them. Every one is re-fetched: the message is a hint, the order is the truth.
TOPIC_KINDS = {
    "ORDER_BUYER_VIEW_BUYER_MAKE": "status",
    "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY": "price",
    "ORDER_BUYER_VIEW_ORDER_PAY": "status",
    "ORDER_BATCH_PAY": "status",
    "ORDER_BUYER_VIEW_ORDER_STEP_PAY": "status",
    "ORDER_BUYER_VIEW_ANNOUNCE_SENDGOODS": "status",
    "ORDER_BUYER_VIEW_PART_PART_SENDGOODS": "status",
    "ORDER_BUYER_VIEW_ORDER_COMFIRM_RECEIVEGOODS": "status",  # sic
    "ORDER_BUYER_VIEW_ORDER_SUCCESS": "status",
    "ORDER_BUYER_VIEW_ORDER_BUYER_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_SELLER_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_BOPS_CLOSE": "status",
    "ORDER_BUYER_VIEW_ORDER_BUYER_REFUND_IN_SALES": "refund",
    "ORDER_BUYER_VIEW_ORDER_REFUND_AFTER_SALES": "refund",
    "ORDER_BUYER_VIEW_MODIFY_MEMO": "other",
    "ORDER_BUYER_VIEW_ORDER_SELLER_MODIFY_ADRESS": "other",  # sic
    "LOGISTICS_BUYER_VIEW_TRACE": "logistics",
    "LOGISTICS_MAIL_NO_CHANGE": "logistics",
}

# --- the model -------------------------------------------------------------------------------------
ALIBABA_STATUS = {
    "waitbuyerpay": "awaiting_payment",
    "waitsellersend": "awaiting_shipment",
    "waitbuyerreceive": "shipped",
    "confirm_goods": "received",
    "success": "completed",
    "cancel": "cancelled",
    "terminated": "closed",
}
# Our amount fields and the baseInfo keys they come from; all yuan, except as noted below.
ORDER_AMOUNTS = {
    "product_amount": "sumProductPayment",
    "shipping_fee": "shippingFee",
    "discount": "discount",
    "total_amount": "totalAmount",
    "refund_amount": "refund",
}
# 1688 documents baseInfo.discount as a Long in fen, unlike its other amounts (yuan decimals);
# DajiSaaS's example shows only 0, so we read it the way 1688 documents it.
INFERRED_FEN_KEYS = frozenset({"discount"})
# Ids: the string field first, since 1688's answers also carry each id as a JSON number that a
# JavaScript or Java-double hop has already rounded (the buyerView doc's subItemID 2257164624870312000).
ORDER_ID_KEYS = ("idOfStr", "id")
LINE_ID_KEYS = ("subItemIDString", "subItemID")
# A line without any id is keyed by what identifies the goods, never by amounts or status, which
# change; two such lines alike are told apart by their rank among them. Which fields: our choice.
INFERRED_LINE_KEY_FIELDS = ("productID", "skuID", "specId", "cargoNumber", "productCargoNumber", "name")
DERIVED_LINE_PREFIX = "derived-"
CURRENCY = "CNY"
# 1688's own time format, as the order list request example writes it: 20250702211113000+0800.
COMPACT_TIME = re.compile(r"^(\d{14})(\d{3})([+-]\d{4})$")
FEN_PER_YUAN = Decimal(100)
# What our columns hold: amounts are BIGINT fen, quantities INTEGER.
MAX_AMOUNT = 2**63 - 1
MAX_QUANTITY = 2**31 - 1
MAX_ID = 64
# A fraction of a fen (a bulk unit price, a split discount) is rounded half up to the fen, as a
# cashier would; docs/architecture.md records the choice.
AMOUNT_ROUNDING = ROUND_HALF_UP


def text_id(value: Any) -> str | None:
    """An id given as a string or a JSON number, as text; None when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip()):
        return str(value).strip()
    if isinstance(value, float) and value.is_integer():
        # An id that reached us as a double: written out as JavaScript would, like the docs' sample.
        return str(int(Decimal(repr(value))))
    return None


def same_double(base: Mapping[str, Any], order_id: str) -> bool:
    """Whether a baseInfo without idOfStr has, as its numeric id, `order_id` rounded to a double."""
    if text_id(base.get("idOfStr")) is not None or not order_id.isdigit():
        return False
    number = base.get("id")
    return isinstance(number, (int, float)) and not isinstance(number, bool) and float(number) == float(int(order_id))


def record_id(record: Mapping[str, Any]) -> str | None:
    """The 1688 order id of an order record: baseInfo.idOfStr, else baseInfo.id."""
    base = record.get("baseInfo")
    if not isinstance(base, dict):
        return None
    return next((found for key in ORDER_ID_KEYS if (found := text_id(base.get(key))) is not None), None)


# --- amounts --------------------------------------------------------------------------------------
def _decimal(value: Any, what: str) -> Decimal:
    """A JSON number (or numeric string) as the exact decimal it was written as."""
    if isinstance(value, bool):
        raise PermanentProviderError(f"{what} is not a number: {value!r}")
    if value is None:
        return Decimal(0)
    if isinstance(value, (int, float, str, Decimal)):
        # str() of a float is the shortest text that reads back as it, which is how JSON wrote it.
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = Decimal("NaN")
        if number.is_finite():
            return number
    raise PermanentProviderError(f"{what} is not a number: {value!r}")


def yuan_to_fen(value: Any, what: str) -> int:
    """A yuan amount as integer fen, exactly (47.3 is 4730); a fraction of a fen rounds half up."""
    return int((_decimal(value, what) * FEN_PER_YUAN).to_integral_value(AMOUNT_ROUNDING))


def unit_price_to_fen(value: Any, what: str) -> int:
    """A yuan unit price as fen, rounded half up: bulk goods are priced below a fen a piece."""
    return yuan_to_fen(value, what)


def _integer(value: Any, what: str) -> int:
    """A count, or an amount 1688 gives in fen, as an integer: a fraction rounds half up."""
    return int(_decimal(value, what).to_integral_value(AMOUNT_ROUNDING))


def _lenient(convert: Any, value: Any, what: str, order_id: str, limit: int = MAX_AMOUNT) -> int:
    """`convert(value)`, or 0 when the value is no number or does not fit our column: one odd field
    must not cost us the order."""
    try:
        number = int(convert(value, what))
    except PermanentProviderError:
        number = None
    if number is None or abs(number) > limit:
        log.warning("alibaba.odd_amount order=%s field=%s value=%.40r", order_id, what, value)
        return 0
    return number


# --- statuses and times ---------------------------------------------------------------------------
def normalised_status(raw: Any) -> tuple[str, str]:
    """Our status for a 1688 baseInfo.status, and the raw value kept as text."""
    text = "" if raw is None else str(raw)
    return ALIBABA_STATUS.get(text, "other"), text


def parse_time(value: Any, what: str) -> datetime | None:
    """A provider time: ISO 8601 as DajiSaaS answers, or 1688's compact form; a naive one is Beijing time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PermanentProviderError(f"{what} is not a time: {value!r}")
    if match := COMPACT_TIME.match(value):
        stamp, millis, offset = match.groups()
        return datetime.strptime(stamp + offset, "%Y%m%d%H%M%S%z") + timedelta(milliseconds=int(millis))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PermanentProviderError(f"{what} is not a time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=CHINA_TIME)


# --- lines ----------------------------------------------------------------------------------------
def _derived_line_key(item: Mapping[str, Any]) -> str:
    """A key for a line that has no id: a digest of what identifies its goods."""
    parts = [f"{k}={text_id(item.get(k)) or ''}" for k in INFERRED_LINE_KEY_FIELDS]
    return DERIVED_LINE_PREFIX + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def line_ids(items: list[Mapping[str, Any]]) -> list[str]:
    """Each line's id, unique within the order and the same on every fetch of it."""
    keys = []
    for item in items:
        found = next((t for k in LINE_ID_KEYS if (t := text_id(item.get(k))) is not None), None)
        keys.append(found if found is not None and len(found) <= MAX_ID - 4 else _derived_line_key(item))
    # Two lines with one key (alike lines without ids, or numeric ids rounded to the same double):
    # the second and later get their rank among them, so the order is still stored.
    seen: Counter[str] = Counter()
    unique = []
    for key in keys:
        seen[key] += 1
        unique.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return unique


def _line(item: Mapping[str, Any], line_id: str, order_id: str) -> LineSnapshot:
    """One productItems entry as our order line."""
    where = f"line {line_id} "
    return LineSnapshot(
        line_id=line_id,
        product_id=_short(text_id(item.get("productID"))),
        sku_id=_short(text_id(item.get("skuID"))),
        title=item.get("name") if isinstance(item.get("name"), str) else None,
        quantity=_lenient(_integer, item.get("quantity"), where + "quantity", order_id, MAX_QUANTITY),
        price=_lenient(unit_price_to_fen, item.get("price"), where + "price", order_id),
        amount=_lenient(yuan_to_fen, item.get("itemAmount"), where + "itemAmount", order_id),
        refund_amount=_lenient(yuan_to_fen, item.get("refund"), where + "refund", order_id),
        raw_status=_short(text_id(item.get("status"))),
    )


def _short(text: str | None) -> str | None:
    """A text column of ours holds 64 characters; a longer provider value is cut, not fatal."""
    return text[:64] if text is not None else None


# --- orders ---------------------------------------------------------------------------------------
def order_snapshot(record: Mapping[str, Any]) -> OrderSnapshot:
    """A 1688 order record (baseInfo, productItems, ...) as our order, amounts in fen."""
    order_id = record_id(record)
    if order_id is None:
        raise PermanentProviderError("1688 order record has no baseInfo.idOfStr or baseInfo.id")
    if len(order_id) > MAX_ID:
        raise PermanentProviderError(f"1688 order id is not an id: {order_id[:MAX_ID]}…")
    base = record["baseInfo"]
    status, raw_status = normalised_status(base.get("status"))
    raw_status = raw_status[:MAX_ID]
    items = record.get("productItems") or []
    if not isinstance(items, list):
        raise PermanentProviderError("1688 order record's productItems is not a list of lines")
    if not all(isinstance(i, dict) for i in items):
        log.warning("alibaba.odd_line order=%s: a productItems entry is not an object; left out", order_id)
        items = [i for i in items if isinstance(i, dict)]
    amounts = {
        ours: _lenient(_integer if key in INFERRED_FEN_KEYS else yuan_to_fen, base.get(key), key, order_id)
        for ours, key in ORDER_AMOUNTS.items()
    }
    try:
        modified_at = parse_time(base.get("modifyTime"), "modifyTime")
    except PermanentProviderError:
        log.warning("alibaba.odd_time order=%s field=modifyTime value=%.40r", order_id, base.get("modifyTime"))
        modified_at = None
    return OrderSnapshot(
        platform=PLATFORM,
        provider_order_id=order_id,
        order_no=None,
        purchase_id=None,
        status=status,
        raw_status=raw_status,
        currency=CURRENCY,
        modified_at=modified_at,
        lines=tuple(_line(i, key, order_id) for i, key in zip(items, line_ids(items), strict=True)),
        **amounts,
    )
