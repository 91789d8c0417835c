"""1688's own order model mapped to ours: exact fen, string ids first, keys for lines without ids."""
from __future__ import annotations

import copy
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from receiver.errors import PermanentProviderError
from receiver.providers import alibaba as model

pytestmark = pytest.mark.unit  # fast: no Redis, no worker, no server

# The buyerView doc's own sample (wiki.dajisaas.com/api-164891585), trimmed: the numeric ids have
# already lost their last digits, the string ids have not.
DOC_ORDER = "2257164624870311973"


def record(**base: Any) -> dict[str, Any]:
    """A two-line order with a different value in every amount, so that a swapped field shows."""
    return {
        "baseInfo": {
            "id": 2257164624870312000,
            "idOfStr": DOC_ORDER,
            "status": "waitsellersend",
            "sumProductPayment": 47.8,
            "shippingFee": 4.5,
            "discount": 150,  # fen, as 1688 documents it
            "totalAmount": 50.8,
            "refund": 1.15,
            "modifyTime": "2025-09-13T09:21:24.000+00:00",
            **base,
        },
        "productItems": [
            {"subItemID": 2257164624870312000, "subItemIDString": "2257164624870311974", "productID": 800609753716,
             "skuID": 5123, "name": "打孔机", "quantity": 2, "price": 23.9, "itemAmount": 46.65, "refund": 1.15,
             "status": "waitsellersend"},
            {"subItemID": 2257164624870312000, "subItemIDString": "2257164624870311975", "productID": 800609753717,
             "skuID": None, "name": "挂卡", "quantity": 3, "price": 0.29, "itemAmount": 0.87, "refund": 0,
             "status": "waitsellersend"},
        ],
    }


# --- amounts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("yuan", "fen"),
    [
        (47.3, 4730),
        (0.29, 29),  # 0.29 * 100 is 28.999999999999996 in floats
        (1.15, 115),  # and 1.15 * 100 is 114.99999999999999
        (12345678.91, 1234567891),
        ("47.30", 4730),
        (Decimal("4.5"), 450),
        (3, 300),
        (0, 0),
        (None, 0),
    ],
)
def test_yuan_become_exact_fen(yuan: Any, fen: int) -> None:
    assert model.yuan_to_fen(yuan, "totalAmount") == fen


@pytest.mark.parametrize(
    ("yuan", "fen"),
    [
        (1.005, 101),  # half a fen rounds up...
        (0.125, 13),  # ...not to even (12)
        (2.675, 268),  # floats would say 267.49999999999997
        (0.035, 4),
        (-0.125, -13),  # half up is away from zero, as a cashier would
        (0.0049, 0),
    ],
)
def test_a_fraction_of_a_fen_rounds_half_up(yuan: Any, fen: int) -> None:
    assert model.yuan_to_fen(yuan, "totalAmount") == fen


@pytest.mark.parametrize("bad", [True, "abc", "NaN", "Infinity", [1], {"yuan": 1}])
def test_what_is_no_number_is_refused_by_the_converter(bad: Any) -> None:
    with pytest.raises(PermanentProviderError, match="totalAmount"):
        model.yuan_to_fen(bad, "totalAmount")


# --- the order --------------------------------------------------------------------------------------
def test_an_order_maps_every_amount_to_its_own_field() -> None:
    snap = model.order_snapshot(record())
    assert (snap.platform, snap.provider_order_id, snap.currency) == ("1688", DOC_ORDER, "CNY")
    assert (snap.status, snap.raw_status) == ("awaiting_shipment", "waitsellersend")
    assert (snap.product_amount, snap.shipping_fee, snap.discount, snap.total_amount, snap.refund_amount) == (
        4780, 450, 150, 5080, 115
    )
    assert snap.modified_at == datetime(2025, 9, 13, 9, 21, 24, tzinfo=timezone.utc)
    assert [(ln.line_id, ln.product_id, ln.sku_id, ln.quantity, ln.price, ln.amount, ln.refund_amount) for ln in snap.lines] == [
        ("2257164624870311974", "800609753716", "5123", 2, 2390, 4665, 115),
        ("2257164624870311975", "800609753717", None, 3, 29, 87, 0),
    ]


def test_the_string_order_id_wins_over_the_rounded_number() -> None:
    assert model.order_snapshot(record()).provider_order_id == DOC_ORDER
    without = record(idOfStr=None)
    assert model.order_snapshot(without).provider_order_id == "2257164624870312000"


@pytest.mark.parametrize(("value", "text"), [
    (2257164624870311973, "2257164624870311973"),
    ("2257164624870311973", "2257164624870311973"),
    (2.257164624870312e18, "2257164624870312000"),  # a double, written out as the docs' sample is
    (None, None), ("", None), (True, None), (1.5, None),
])
def test_text_id(value: Any, text: str | None) -> None:
    assert model.text_id(value) == text


@pytest.mark.parametrize("base", [{"idOfStr": None, "id": None}, {"idOfStr": "", "id": True}])
def test_an_order_without_any_id_is_refused(base: dict[str, Any]) -> None:
    with pytest.raises(PermanentProviderError, match="baseInfo"):
        model.order_snapshot(record(**base))


@pytest.mark.parametrize(
    ("field", "value", "ours", "fen"),
    [
        ("discount", 12.5, "discount", 13),  # a fractional discount rounds, it does not abort
        ("discount", "abc", "discount", 0),
        ("shippingFee", "free", "shipping_fee", 0),
        ("totalAmount", [47.3], "total_amount", 0),
        ("refund", True, "refund_amount", 0),
        ("sumProductPayment", 47.805, "product_amount", 4781),
    ],
)
def test_an_odd_amount_never_costs_the_order(field: str, value: Any, ours: str, fen: int, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "receiver.providers.alibaba")
    snap = model.order_snapshot(record(**{field: value}))
    assert getattr(snap, ours) == fen
    assert snap.shipping_fee == (450 if field != "shippingFee" else 0)  # the others are untouched
    assert len(snap.lines) == 2
    odd = isinstance(value, (str, list, bool))
    assert ("alibaba.odd_amount" in caplog.text) == odd


def test_odd_line_values_never_cost_the_order() -> None:
    rec = record()
    rec["productItems"][0].update(quantity=1.5, price="n/a", itemAmount=None)
    rec["productItems"].append("not a line")
    first = model.order_snapshot(rec).lines[0]
    assert (first.quantity, first.price, first.amount, first.refund_amount) == (2, 0, 0, 115)


def test_an_unreadable_modify_time_is_left_out() -> None:
    assert model.order_snapshot(record(modifyTime="yesterday")).modified_at is None


# --- line keys ------------------------------------------------------------------------------------
def test_the_string_line_id_wins_over_the_rounded_number() -> None:
    ids = [line.line_id for line in model.order_snapshot(record()).lines]
    assert ids == ["2257164624870311974", "2257164624870311975"]


def test_rounded_numeric_line_ids_that_collide_stay_apart() -> None:
    rec = record()
    for item in rec["productItems"]:
        item["subItemIDString"] = None
    ids = [line.line_id for line in model.order_snapshot(rec).lines]
    assert ids == ["2257164624870312000", "2257164624870312000#2"]


def _no_ids(rec: dict[str, Any]) -> dict[str, Any]:
    for item in rec["productItems"]:
        item.pop("subItemID"), item.pop("subItemIDString")
    return rec


def test_a_line_without_an_id_gets_a_stable_derived_key() -> None:
    first = model.order_snapshot(_no_ids(record()))
    later = _no_ids(record(status="success"))
    later["productItems"][0].update(itemAmount=40.0, refund=6.65, status="success")  # amounts and status move
    again = model.order_snapshot(later)
    keys = [line.line_id for line in first.lines]
    assert keys == [line.line_id for line in again.lines]
    assert all(k.startswith("derived-") and len(k) <= 64 for k in keys) and len(set(keys)) == 2
    reordered = _no_ids(record())
    reordered["productItems"].reverse()
    assert [line.line_id for line in model.order_snapshot(reordered).lines] == keys[::-1]


def test_lines_alike_without_ids_get_distinct_keys() -> None:
    rec = _no_ids(record())
    rec["productItems"][1] = copy.deepcopy(rec["productItems"][0])
    keys = [line.line_id for line in model.order_snapshot(rec).lines]
    assert keys[1] == keys[0] + "#2"


# --- statuses and times -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("waitbuyerpay", "awaiting_payment"),
        ("waitsellersend", "awaiting_shipment"),
        ("waitbuyerreceive", "shipped"),
        ("confirm_goods", "received"),
        ("success", "completed"),
        ("cancel", "cancelled"),
        ("terminated", "closed"),
        ("waitselleract", "other"),
        (None, "other"),
    ],
)
def test_status_table(raw: str | None, status: str) -> None:
    assert model.normalised_status(raw) == (status, raw or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-13T09:21:24.000+00:00", datetime(2025, 9, 13, 9, 21, 24, tzinfo=timezone.utc)),
        ("2025-09-13 17:21:24", datetime(2025, 9, 13, 9, 21, 24, tzinfo=timezone.utc)),
        ("20250913172124500+0800", datetime(2025, 9, 13, 9, 21, 24, 500000, tzinfo=timezone.utc)),
        (None, None),
    ],
)
def test_times_without_an_offset_are_china_time(text: str | None, expected: datetime | None) -> None:
    assert model.parse_time(text, "modifyTime") == expected


def test_unreadable_time_is_refused_by_the_parser() -> None:
    with pytest.raises(PermanentProviderError):
        model.parse_time("yesterday", "modifyTime")


def test_values_too_big_for_our_columns_count_as_odd() -> None:
    rec = record(totalAmount=1e20)
    rec["productItems"][0]["quantity"] = 2**31
    rec["baseInfo"]["status"] = "x" * 100
    snap = model.order_snapshot(rec)
    assert (snap.total_amount, snap.lines[0].quantity, snap.product_amount) == (0, 0, 4780)
    assert snap.raw_status == "x" * 64 and snap.status == "other"


def test_an_order_id_longer_than_any_id_is_refused() -> None:
    with pytest.raises(PermanentProviderError, match="not an id"):
        model.order_snapshot(record(idOfStr="9" * 65))
