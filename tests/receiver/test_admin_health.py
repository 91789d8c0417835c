"""/admin's front page: the day's charts from counts the web and the worker keep on Redis, and the alert state."""
from __future__ import annotations

import re
import time
from collections import Counter

from receiver import stats
from receiver.models import EventStatus
from tests.conftest import TOKENS, wait_for
from tests.receiver.test_admin import ADMIN
from tests.workers.test_refetch import ALIBABA, events_when, send


def bars(html: str, chart: str) -> list[tuple[str, str]]:
    """(series, value) of each bar one chart draws."""
    svg = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    return re.findall(r'<rect class="bar" data-series="([^"]+)" data-value="([^"]+)"', svg)


def test_the_front_page_draws_the_days_pushes_refusals_refetches_and_dead_letters(app, client, sandbox, worker, quiet_charts):
    svc = app.extensions["receiver"]
    now = time.time()
    minute = int(now // 60)
    # Earlier hours of the day, as the web's and the worker's tallies would have written them.
    stats.flush(svc, Counter({(minute - 300, "push:demo:accepted"): 12, (minute - 300, "ack:25"): 12,
                              (minute - 600, "push:daji:accepted"): 7, (minute - 600, "ack:2500"): 7,
                              (minute - 25 * 60, "push:demo:accepted"): 99}))  # older than the day: not drawn
    stats.sample_queue(svc, 35, now=now - 300 * 60)
    stats.sample_queue(svc, 4, now=now - 300 * 60 + 60)  # the hour shows its highest

    provider = sandbox.providers["xportcn"]
    sandbox.faults.broken_orders[ALIBABA] = (1001, "locked")
    assert send(client, provider, ALIBABA, "ORDER_CREATE").status_code == 200
    assert client.post("/callbacks/demo?token=wrong-token-0123456789", json={}).status_code == 401
    assert client.post("/callbacks/nobody?token=wrong-token-0123456789", json={}).status_code == 404
    events_when(app, EventStatus.DEAD)

    def drawn() -> str | None:
        html = client.get("/admin/", headers=ADMIN).get_data(as_text=True)
        return html if bars(html, "chart-dead-minutes") and bars(html, "chart-refused-minutes") else None

    html = wait_for(drawn, timeout=10)
    assert bars(html, "chart-refused-minutes") == [("demo", "1"), ("unknown", "1")]  # a name not configured is "unknown"
    assert bars(html, "chart-pushes-hours") == [("daji", "7"), ("demo", "12"), ("demo", "1")]
    assert bars(html, "chart-pushes-minutes") == [("demo", "1")]
    assert bars(html, "chart-refused-hours") == [("demo", "1"), ("unknown", "1")]
    assert bars(html, "chart-refetches-hours") == [("dead", "1")]
    assert bars(html, "chart-dead-minutes") == [("dead letters", "1")]
    # p50 and p99 of each hour with answers: the bound of their bucket, in ms.
    latency = re.search(r'<svg id="chart-latency-hours".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    points = re.findall(r'data-series="(p\d+)" data-value="([^"]+)"', latency)
    assert ("p50", "2,500") in points and ("p99", "25") in points and len(points) == 6
    assert 'data-series="tasks waiting" data-value="35"' in html
    assert "<title>" in html and "demo: 12</title>" in html  # the numbers, without script
    # The alert state: the dead letter, its alert, and where to replay it.
    assert 'id="count-dead">dead (1)' in html and 'href="/admin/events?status=dead"' in html
    assert "<strong>dead_letter</strong> 1" in html
    assert f'href="/admin/orders/demo/{ALIBABA}"' in html


def test_without_redis_the_front_page_still_answers(make_app):
    down = make_app(broker_url="redis://127.0.0.1:1/0").test_client()
    resp = down.get("/admin/", headers=ADMIN)
    assert resp.status_code == 200 and 'id="charts-missing"' in resp.get_data(as_text=True)


def test_pushes_are_counted_off_the_request_and_summed_on_redis(app, client, quiet_charts):
    for _ in range(3):
        assert client.post(f"/callbacks/daji?token={TOKENS['daji']}", data=b"", content_type="application/x-www-form-urlencoded").status_code == 400
    svc = app.extensions["receiver"]

    def counted() -> dict[str, int] | None:
        hour = stats.read(svc)["hours"][-1][1]
        return hour if hour.get("push:daji:refused") == 3 else None

    assert "ack:" not in "".join(wait_for(counted, timeout=5))  # refusals leave the latency alone
