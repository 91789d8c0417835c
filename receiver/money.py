"""Amounts as people read them: fen integers (kept in the database and the API) shown as yuan."""
from __future__ import annotations

from typing import Any


def yuan_digits(fen: Any) -> str:
    """`fen` as yuan with exactly two decimals, by integer arithmetic: 23100 -> "231.00", -5 -> "-0.05"."""
    amount = int(fen)
    whole, cents = divmod(abs(amount), 100)
    return f"{'-' if amount < 0 else ''}{whole}.{cents:02d}"


def yuan(fen: Any, currency: str | None = "CNY") -> str:
    """`fen` as the pages show it: "231.00 CNY"; empty for no amount."""
    if fen is None or fen == "":
        return ""
    return f"{yuan_digits(fen)} {currency or 'CNY'}"
