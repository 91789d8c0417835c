"""`receiver simulate` and the sandbox's control API, against the app served over HTTP and a real worker."""
from __future__ import annotations

import re
import time

import pytest
import requests
from click.testing import CliRunner

from receiver import simulate
from receiver.cli import main

ALIBABA = "2542285634920880794"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("price", "total_amount=23189"), ("status", "status=awaiting_shipment (waitsellersend)"), ("refund", "refund_amount=515")],
)
def test_simulate_prints_each_push_and_the_refetched_state(settings, live_url, worker, kind, expected):
    lines: list[str] = []
    code = simulate.run(settings.sources["demo"], kind, live_url, settings.database_url, order=ALIBABA, wait=True, echo=lines.append)
    assert code == 0
    assert re.fullmatch(rf"push 1/1 \S+ order={ALIBABA} -> 200 \(\d+ ms\)", lines[0])
    assert expected in lines[1] and lines[1].startswith(f"order {ALIBABA} (1688)")


def test_duplicates_and_shuffle_are_acknowledged_and_processed_once(app, settings, live_url, sandbox, worker):
    lines: list[str] = []
    code = simulate.run(
        settings.sources["demo"], "price", live_url, settings.database_url, order=ALIBABA,
        count=3, duplicates=2, shuffle=True, wait=True, echo=lines.append,
    )
    assert code == 0 and len([line for line in lines if line.startswith("push ")]) == 9
    [state] = [line for line in lines if line.startswith(f"order {ALIBABA}")]
    assert "total_amount=22879" in state  # three corrections of 1.55 yuan off 233.44
    from tests.workers.test_refetch import events  # the same inbox reader the worker tests use

    assert len(events(app)) == 3


def test_control_api_sets_faults(settings, sandbox):
    base = simulate.control_url(settings.sources["demo"]).rsplit("/", 1)[0]
    assert requests.post(f"{base}/faults", json={"queued": ["http429"], "broken_orders": {ALIBABA: [1001, "locked"]}}).ok
    assert sandbox.faults.queued == ["http429"] and sandbox.faults.broken_orders[ALIBABA] == (1001, "locked")
    orders = requests.post(f"{base}/xportcn/orders").json()["orders"]
    assert ALIBABA in orders and "200058578338" in orders


def test_cli_refuses_a_source_it_does_not_know(environ, monkeypatch):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["simulate", "price", "--source", "nobody"])
    assert result.exit_code != 0 and "no source 'nobody'" in result.output


def test_simulate_dajisaas_refund_with_redelivery(app, settings, live_url, worker):
    lines: list[str] = []
    code = simulate.run(settings.sources["daji"], "refund", live_url, settings.database_url, duplicates=2, wait=True, echo=lines.append)
    assert code == 0
    assert [line.rsplit("->", 1)[1].split()[0] for line in lines if line.startswith("push ")] == ["200"] * 3
    from tests.workers.test_refetch import events

    assert len(events(app)) == 1  # the same msgId three times is one event
    [state] = [line for line in lines if line.startswith("order ")]
    assert "refund_amount=" in state and "refund_amount=0," not in state


def test_simulate_a_dajisaas_taobao_message_says_it_is_ignored_without_waiting(app, settings, live_url, worker):
    lines: list[str] = []
    started = time.monotonic()
    code = simulate.run(settings.sources["daji"], "price", live_url, settings.database_url, wait=True, echo=lines.append,
                        shape="taobao", timeout=20)
    assert code == 0 and time.monotonic() - started < 10
    assert lines[1].startswith("order ") and "ignored, nothing to re-fetch: " in lines[1] and "Taobao" in lines[1]
