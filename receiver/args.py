"""Query arguments as the read API and the admin pages take them."""
from __future__ import annotations

from flask import request

from receiver.errors import BadRequest
from receiver.models import EventStatus


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    """A query argument that must be a whole number from `lo` to `hi`; BadRequest names it otherwise.

    Only ASCII digits: `str.isdigit` also takes "²", which `int` then refuses with a 500.
    """
    raw = request.args.get(name, str(default))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi))) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def page_arg(max_page: int) -> int:
    """The `page` argument, from 1 (its default) to `max_page`: a deeper OFFSET would scan too much."""
    return int_arg("page", 1, 1, max_page)


def status_arg() -> str:
    """The `status` argument: empty (any), or an event status; BadRequest names the choices otherwise."""
    status = request.args.get("status", "")
    if status and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    return status


STATUSES = tuple(EventStatus)
