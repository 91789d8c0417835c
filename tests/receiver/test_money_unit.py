"""Fast tests: amounts in yuan, history values as shown, CSV cells that a spreadsheet will not run."""
from __future__ import annotations

import pytest

from receiver.admin import csv_cell, shown_value
from receiver.money import yuan, yuan_digits

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("fen", "shown"), [
    (23100, "231.00"), (23194, "231.94"), (5, "0.05"), (50, "0.50"), (0, "0.00"), (-5, "-0.05"), (-155, "-1.55"),
    (-23100, "-231.00"), ("23344", "233.44"), ("-505", "-5.05"), (123456789012, "1234567890.12"),
])
def test_fen_show_as_yuan_with_two_decimals(fen, shown):
    assert yuan_digits(fen) == shown
    assert yuan(fen) == f"{shown} CNY"


def test_yuan_names_the_orders_currency_and_shows_nothing_for_no_amount():
    assert yuan(1050, "USD") == "10.50 USD"
    assert yuan(1050, None) == "10.50 CNY"
    assert yuan(None) == "" and yuan("") == ""


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("total_amount", "23344", "233.44 CNY"), ("refund_amount", "-505", "-5.05 CNY"), ("discount", "155", "1.55 CNY"),
    ("line:2542285634920880794.price", "4730", "47.30 CNY"), ("line:X.refund_amount", "5", "0.05 CNY"),
    ("line:X.quantity", "3", "3"), ("status", "closed", "closed"), ("line:X", "added", "added"),
    ("total_amount", "odd", "odd"), ("modified_at", "2026-12-01T08:00:00+00:00", "2026-12-01T08:00:00+00:00"),
    ("total_amount", None, ""),
])
def test_history_values_show_amounts_in_yuan_and_the_rest_as_recorded(field, value, shown):
    assert shown_value(field, value, "CNY") == shown


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+N-2", "'+N-2"), ("-1.55", "-1.55"), ("-1+1", "'-1+1"), ("-cmd", "'-cmd"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"), ("2542285634920880794", "2542285634920880794"), ("a=b", "a=b"), ("", ""),
    (-155, -155), (None, None),
])
def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote(value, cell):
    assert csv_cell(value) == cell
