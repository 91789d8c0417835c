"""1688's own order model (`baseInfo`, `productItems`, ...), as both families' APIs answer it.

DajiSaaS's buyerView and order list, and the Xportcn family's `/alibaba/order/detail`, pass 1688's
order through: yuan decimals, status strings, ids as numbers and as strings. This module maps it to
our order; the families keep their own envelopes, paths and signing.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping

from receiver.errors import PermanentProviderError
from receiver.providers import LineSnapshot, OrderSnapshot

PLATFORM = "1688"

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
CURRENCY = "CNY"
# 1688 times without an offset are Beijing time.
CHINA_TIME = timezone(timedelta(hours=8))
# 1688's own time format, as the order list request example writes it: 20250702211113000+0800.
COMPACT_TIME = re.compile(r"^(\d{14})(\d{3})([+-]\d{4})$")
FEN_PER_YUAN = Decimal(100)


def text_id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip()):
        return str(value).strip()
    return None



def record_id(record: Mapping[str, Any]) -> str | None:
    base = record.get("baseInfo")
    if not isinstance(base, dict):
        return None
    return text_id(base.get("idOfStr")) or text_id(base.get("id"))



# --- orders -------------------------------------------------------------------------------------
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


def _whole(number: Decimal, what: str) -> int:
    if number != number.to_integral_value():
        raise PermanentProviderError(f"{what} is not a whole number: {number}")
    return int(number)


def yuan_to_fen(value: Any, what: str) -> int:
    """A yuan amount as integer fen, exactly: 47.3 is 4730; a fraction of a fen is an error."""
    return _whole(_decimal(value, what) * FEN_PER_YUAN, what)


def unit_price_to_fen(value: Any, what: str) -> int:
    """A yuan unit price as fen, rounded half up: bulk goods are priced below a fen a piece."""
    return int((_decimal(value, what) * FEN_PER_YUAN).to_integral_value(ROUND_HALF_UP))


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


def _line(item: Mapping[str, Any]) -> LineSnapshot:
    """One productItems entry as our order line."""
    line_id = text_id(item.get("subItemIDString")) or text_id(item.get("subItemID"))
    if line_id is None:
        raise PermanentProviderError("1688 order line has no subItemID")
    return LineSnapshot(
        line_id=line_id,
        product_id=text_id(item.get("productID")),
        sku_id=text_id(item.get("skuID")),
        title=item.get("name"),
        quantity=_whole(_decimal(item.get("quantity"), "quantity"), "quantity"),
        price=unit_price_to_fen(item.get("price"), "price"),
        amount=yuan_to_fen(item.get("itemAmount"), "itemAmount"),
        refund_amount=yuan_to_fen(item.get("refund"), "refund"),
        raw_status=text_id(item.get("status")),
    )


def _amount(base: Mapping[str, Any], key: str) -> int:
    if key in INFERRED_FEN_KEYS:
        return _whole(_decimal(base.get(key), key), key)
    return yuan_to_fen(base.get(key), key)


def order_snapshot(record: Mapping[str, Any]) -> OrderSnapshot:
    """A getBuyerOrderList record (baseInfo, productItems, ...) as our order, amounts in fen."""
    order_id = record_id(record)
    if order_id is None:
        raise PermanentProviderError("1688 order record has no baseInfo.id")
    base = record["baseInfo"]
    status, raw_status = normalised_status(base.get("status"))
    items = record.get("productItems") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PermanentProviderError("1688 order record's productItems is not a list of lines")
    amounts = {ours: _amount(base, key) for ours, key in ORDER_AMOUNTS.items()}
    return OrderSnapshot(
        platform=PLATFORM,
        provider_order_id=order_id,
        order_no=None,
        purchase_id=None,
        status=status,
        raw_status=raw_status,
        currency=CURRENCY,
        modified_at=parse_time(base.get("modifyTime"), "modifyTime"),
        lines=tuple(_line(i) for i in items),
        **amounts,
    )


