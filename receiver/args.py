"""Query arguments as the read API and the admin pages take them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

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


UNITS = {"m": 60, "h": 3600, "d": 86400}


def when_arg(name: str, default: str = "") -> datetime | None:
    """A query argument naming a moment: how long ago (30m, 6h, 1d, 7d) or a UTC date or time; None when empty."""
    text = (request.args.get(name) or default).strip()  # a cleared form field means the default
    if not text:
        return None
    now = datetime.now(timezone.utc)
    # At most 5 digits: a longer number of days would overflow datetime into a 500.
    if len(text) > 1 and text[-1] in UNITS and text[:-1].isascii() and text[:-1].isdigit() and len(text) <= 6:
        return now - timedelta(seconds=int(text[:-1]) * UNITS[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a UTC date or time (2026-12-01T08:00) or how long ago (30m, 6h, 1d)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


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
