"""Query arguments as the read API and the admin pages take them."""
from __future__ import annotations

from flask import request

from receiver.errors import BadRequest


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    """A query argument that must be a whole number from `lo` to `hi`; BadRequest names it otherwise.

    Only ASCII digits: `str.isdigit` also takes "²", which `int` then refuses with a 500.
    """
    raw = request.args.get(name, str(default))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi))) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)
