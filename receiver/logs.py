"""Logging: one handler on the root logger, JSON or text, with the event and order being handled on every line."""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# What a line is about. A ContextVar, not a thread-local: each Celery task and each web request
# runs in its own context, so values never leak from one event's lines into the next one's.
_bound: ContextVar[Mapping[str, Any]] = ContextVar("receiver_log_context", default=MappingProxyType({}))
CONTEXT_KEYS = ("source", "event_id", "order_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def loggable(text: str, limit: int = 64) -> str:
    """Text a client chose (a path, a source name), made safe for a log line: control characters
    escaped, so that it cannot start a line of its own, and cut to `limit` characters."""
    cut = text[:limit]
    safe = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in cut)
    return safe + ("…" if len(text) > limit else "")


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Add `values` to every log line written inside the block, then restore what was bound before."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bind(**values: Any) -> None:
    """Add `values` to every later log line of this context, until `clear()`."""
    _bound.set({**_bound.get(), **{k: v for k, v in values.items() if v is not None}})


def clear() -> None:
    """Forget what was bound: a web thread serves the next request in the same context."""
    _bound.set({})


class ContextFilter(logging.Filter):
    """Copies the bound values onto each record, where formatters (and tests) can read them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The classic one-line format, with the bound values appended as key=value."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the stdlib's name
        # One record, one line, whatever a message holds (a traceback follows it on lines of its own).
        line = super().formatMessage(record).replace("\r", "\\r").replace("\n", "\\n")
        context = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if hasattr(record, k))
        return f"{line} [{context}]" if context else line


def json_formatter() -> logging.Formatter:
    """One JSON object per line; bound values and `extra=` fields become keys of their own."""
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def configure(level: str, fmt: str) -> None:
    """Install the receiver's handler on the root logger once per process; later calls only adjust it."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "receiver", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.receiver = True  # type: ignore[attr-defined]
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(json_formatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root.setLevel(level)
