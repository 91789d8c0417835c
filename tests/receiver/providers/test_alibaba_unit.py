"""1688's order model, field by field: every line field in its column, odd values logged by name and
counted as 0, limits of our columns, times, ids and derived line keys."""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from receiver.errors import PermanentProviderError
from receiver.providers import alibaba as model

pytestmark = pytest.mark.unit

DOC_ORDER = "2257164624870311973"  # the buyerView doc's sample (wiki.dajisaas.com/api-164891585)


def record(items: list[Any] | None = None, **base: Any) -> dict[str, Any]:
    info = {"idOfStr": DOC_ORDER, "id": 2257164624870312000, "status": "waitbuyerreceive", "sumProductPayment": 47.52,
            "shippingFee": 4.5, "discount": 150, "totalAmount": 50.52, "refund": 1.15, "modifyTime": "20250913172124123+0800", **base}
    line = {"subItemIDString": "2257164624870311974", "productID": 800609753716, "skuID": "5123", "name": "打孔机", "quantity": 2,
            "price": 23.9, "itemAmount": 46.65, "refund": 1.15, "status": "waitbuyerreceive"}
    return {"baseInfo": info, "productItems": [line] if items is None else items}


def test_every_field_lands_in_its_column() -> None:
    snap = model.order_snapshot(record())
    assert (snap.platform, snap.provider_order_id, snap.order_no, snap.purchase_id, snap.currency) == ("1688", DOC_ORDER, None, None, "CNY")
    assert (snap.status, snap.raw_status) == ("shipped", "waitbuyerreceive")
    assert (snap.product_amount, snap.shipping_fee, snap.discount, snap.total_amount, snap.refund_amount) == (4752, 450, 150, 5052, 115)
    assert snap.modified_at == datetime(2025, 9, 13, 9, 21, 24, 123000, tzinfo=timezone.utc)
    [line] = snap.lines
    assert (line.line_id, line.product_id, line.sku_id, line.title, line.quantity, line.price, line.amount, line.refund_amount,
            line.raw_status) == ("2257164624870311974", "800609753716", "5123", "打孔机", 2, 2390, 4665, 115, "waitbuyerreceive")


@pytest.mark.parametrize(("field", "what"), [("quantity", "quantity"), ("price", "price"), ("itemAmount", "itemAmount"), ("refund", "refund")])
def test_an_odd_line_value_is_logged_by_line_and_field_and_counts_0(field: str, what: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "receiver.providers.alibaba")
    items = record()["productItems"]
    items[0][field] = "n/a"
    line = model.order_snapshot(record(items)).lines[0]
    assert getattr(line, {"itemAmount": "amount", "refund": "refund_amount"}.get(field, field)) == 0
    assert f"alibaba.odd_amount order={DOC_ORDER} field=line 2257164624870311974 {what} value='n/a'" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


@pytest.mark.parametrize(("quantity", "kept"), [(2**31 - 1, 2**31 - 1), (2**31, 0), (-(2**31 - 1), -(2**31 - 1)), (-(2**31), 0)])
def test_a_quantity_must_fit_an_integer_column(quantity: int, kept: int) -> None:
    items = record()["productItems"]
    items[0]["quantity"] = quantity
    assert model.order_snapshot(record(items)).lines[0].quantity == kept


@pytest.mark.parametrize(("yuan", "kept"), [(Decimal(2**63 - 1) / 100, 2**63 - 1), (Decimal(2**63) / 100, 0)])
def test_an_amount_must_fit_a_bigint_column(yuan: Decimal, kept: int) -> None:
    assert model.order_snapshot(record(totalAmount=str(yuan))).total_amount == kept


def test_long_texts_are_cut_and_a_non_text_title_left_out() -> None:
    items = record()["productItems"]
    items[0].update(productID="P" * 70, skuID="S" * 70, status="s" * 70, name=["not", "text"])
    line = model.order_snapshot(record(items, status="w" * 70)).lines[0]
    assert (line.product_id, line.sku_id, line.raw_status, line.title) == ("P" * 64, "S" * 64, "s" * 64, None)
    assert model.order_snapshot(record(status="w" * 70)).raw_status == "w" * 64


def test_an_order_without_lines_or_status() -> None:
    snap = model.order_snapshot({"baseInfo": {"idOfStr": DOC_ORDER}})
    assert (snap.lines, snap.status, snap.raw_status, snap.total_amount, snap.modified_at) == ((), "other", "", 0, None)


def test_product_items_that_are_no_list_are_refused() -> None:
    with pytest.raises(PermanentProviderError) as err:
        model.order_snapshot(record(items={"a": 1}))  # type: ignore[arg-type]
    assert err.value.message == "1688 order record's productItems is not a list of lines"


def test_a_line_that_is_no_object_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "receiver.providers.alibaba")
    items = record()["productItems"] + ["x", 7]
    assert len(model.order_snapshot(record(items)).lines) == 1
    assert f"alibaba.odd_line order={DOC_ORDER}: a productItems entry is not an object; left out" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_an_overlong_order_id_is_refused_cut_in_the_message() -> None:
    with pytest.raises(PermanentProviderError) as err:
        model.order_snapshot(record(idOfStr="9" * 65))
    assert err.value.message == f"1688 order id is not an id: {'9' * 64}…"
    assert model.order_snapshot(record(idOfStr="9" * 64)).provider_order_id == "9" * 64


def test_an_unreadable_modify_time_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "receiver.providers.alibaba")
    assert model.order_snapshot(record(modifyTime=20250913)).modified_at is None
    assert f"alibaba.odd_time order={DOC_ORDER} field=modifyTime value=20250913" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


# --- times -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("20250702211113000+0800", datetime(2025, 7, 2, 13, 11, 13, tzinfo=timezone.utc)),
        ("20250702211113456-0130", datetime(2025, 7, 2, 22, 41, 13, 456000, tzinfo=timezone.utc)),
        ("2025-07-02T21:11:13", datetime(2025, 7, 2, 13, 11, 13, tzinfo=timezone.utc)),
        ("2025-07-02T21:11:13.5+00:00", datetime(2025, 7, 2, 21, 11, 13, 500000, tzinfo=timezone.utc)),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: Any, moment: datetime | None) -> None:
    assert model.parse_time(text, "modifyTime") == moment


@pytest.mark.parametrize("value", [20250702, "yesterday", ["2025"], "2025-13-02T00:00:00"])
def test_an_unreadable_time_is_refused_naming_it(value: Any) -> None:
    with pytest.raises(PermanentProviderError) as err:
        model.parse_time(value, "gmtModified")
    assert err.value.message == f"gmtModified is not a time: {value!r}"


def test_a_naive_time_is_china_time() -> None:
    assert model.parse_time("2025-07-02 21:11:13", "t").utcoffset() == timedelta(hours=8)  # type: ignore[union-attr]


# --- ids and line keys -------------------------------------------------------------------------
@pytest.mark.parametrize(("base", "order_id", "same"), [({"id": 2257164624870312000}, DOC_ORDER, True),
                                                       ({"id": 2257164624870312000.0}, DOC_ORDER, True),
                                                       ({"id": 2257164624870311973}, DOC_ORDER, True),
                                                       ({"id": 2257164624870315000}, DOC_ORDER, False),
                                                       ({"id": 2257164624870312000, "idOfStr": DOC_ORDER}, DOC_ORDER, False),
                                                       ({"id": True}, "1", False), ({"id": "2257164624870312000"}, DOC_ORDER, False),
                                                       ({"id": 5}, "PO5", False)])
def test_same_double(base: dict[str, Any], order_id: str, same: bool) -> None:
    assert model.same_double(base, order_id) is same


@pytest.mark.parametrize(("rec", "found"), [({"baseInfo": {"idOfStr": " 12 ", "id": 13}}, "12"), ({"baseInfo": {"idOfStr": "", "id": 13}}, "13"),
                                            ({"baseInfo": "x"}, None), ({}, None), ({"baseInfo": {"id": 1.0e3}}, "1000")])
def test_record_id(rec: dict[str, Any], found: str | None) -> None:
    assert model.record_id(rec) == found


def test_a_derived_line_key_is_a_digest_of_the_goods() -> None:
    item = {"productID": 800609753716, "skuID": None, "specId": "b1f7", "cargoNumber": "", "name": "挂卡", "price": 0.29}
    text = "\x1f".join(["productID=800609753716", "skuID=", "specId=b1f7", "cargoNumber=", "productCargoNumber=", "name=挂卡"])
    expected = "derived-" + hashlib.sha256(text.encode()).hexdigest()[:32]
    assert model.line_ids([item]) == [expected]
    assert model.line_ids([{**item, "price": 0.3, "quantity": 9}]) == [expected]  # amounts and status do not key a line


def test_a_line_id_too_long_for_its_column_gets_a_derived_key() -> None:
    ok, too_long = {"subItemIDString": "7" * 60}, {"subItemIDString": "7" * 61, "name": "挂卡"}
    assert model.line_ids([ok]) == ["7" * 60]
    assert model.line_ids([too_long])[0].startswith("derived-")


def test_three_alike_lines_are_ranked() -> None:
    alike = {"subItemID": 2257164624870312000}
    assert model.line_ids([alike, alike, alike]) == ["2257164624870312000", "2257164624870312000#2", "2257164624870312000#3"]


# --- amounts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "fen"), [(" 47.30 ", 4730), ("0.285", 29), (0.005, 1), (0.004, 0), (-1.155, -116)])
def test_yuan_to_fen(value: Any, fen: int) -> None:
    assert model.yuan_to_fen(value, "x") == fen
    assert model.unit_price_to_fen(value, "x") == fen


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "Infinity", "sNaN", "1,5", object()])
def test_what_is_not_a_finite_number_is_refused_naming_it(value: Any) -> None:
    with pytest.raises(PermanentProviderError) as err:
        model.yuan_to_fen(value, "itemAmount")
    assert err.value.message == f"itemAmount is not a number: {value!r}"


def test_a_discount_is_fen_already() -> None:
    assert model.order_snapshot(record(discount="155")).discount == 155
    assert model.order_snapshot(record(discount=12.5)).discount == 13


def test_an_odd_order_amount_is_logged_by_its_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "receiver.providers.alibaba")
    assert model.order_snapshot(record(totalAmount="n/a")).total_amount == 0
    assert f"alibaba.odd_amount order={DOC_ORDER} field=totalAmount value='n/a'" in [r.getMessage() for r in caplog.records]
