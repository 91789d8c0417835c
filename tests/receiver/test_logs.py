"""JSON and text log lines carry the source, event and order being handled."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from receiver import logs
from tests.workers.test_refetch import events_when, send


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The JSON lines written under `receiver.` and `workers.` loggers during a test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.json_formatter())
    targets = [logging.getLogger("receiver"), logging.getLogger("workers")]
    levels = [logger.level for logger in targets]
    for logger in targets:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for logger, level in zip(targets, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines(out: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_bound_values_are_on_every_line_inside_the_block_only(captured):
    log = logging.getLogger("receiver.test")
    with logs.bound(event_id=7, order_id="A1"):
        log.info("first")
        with logs.bound(order_id="B2"):
            log.warning("inner")
    log.info("after")
    first, inner, after = lines(captured)
    assert (first["event_id"], first["order_id"], first["message"], first["level"]) == (7, "A1", "first", "INFO")
    assert (inner["event_id"], inner["order_id"]) == (7, "B2")
    assert "event_id" not in after and "order_id" not in after


def test_text_format_appends_the_bound_values():
    record = logging.LogRecord("receiver.x", logging.INFO, __file__, 1, "order.changed", None, None)
    with logs.bound(event_id=3, order_id="X"):
        logs.ContextFilter().filter(record)
    text = logs.TextFormatter(logs.TEXT_FORMAT).format(record)
    assert text.endswith("order.changed [event_id=3 order_id=X]")


def test_a_refused_push_is_logged_with_its_source_and_the_next_request_without(client, captured):
    assert client.post("/callbacks/demo?token=wrong", data=b"{}").status_code == 401
    assert client.post("/callbacks/nosuch?token=x", data=b"{}").status_code == 404
    refused, unknown = [line for line in lines(captured) if line["logger"] == "receiver.callbacks"]
    assert refused["message"].startswith("callback.bad_token") and refused["source"] == "demo"
    assert unknown["message"].startswith("callback.unknown_source") and "source" not in unknown


def test_worker_lines_carry_the_event_and_the_order(app, client, sandbox, worker, worker_log):
    provider = sandbox.providers["xportcn"]
    [order_id] = provider.add_orders(1)  # an order no earlier test's late task can have touched
    assert send(client, provider, order_id, "ORDER_CREATE").status_code == 200
    [event] = events_when(app, "processed")
    ours = [json.loads(line) for line in worker_log.read_text().splitlines() if line.startswith("{") and f'"event_id": {event.id}' in line]
    changed = [line for line in ours if line["message"].startswith("order.changed") and line["order_id"] == order_id]
    assert changed and changed[0]["source"] == "demo"
