"""Reads never make a push wait: pages, the API and /metrics read off the writer's path, and cheaply."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import text

from receiver.inbox import current_counts, inbox_counts
from tests.conftest import API_TOKEN, TOKENS
from tests.receiver.test_admin import ADMIN

URL = f"/callbacks/demo?token={TOKENS['demo']}"
ORDER = "2542285634920880794"


def push(order_id: str = ORDER, **body: object) -> dict[str, object]:
    return {"messageType": "ORDER_CREATE", "messageBody": {"orderId": order_id, **body}, "messagePlatform": 1,
            "timestamp": str(time.time_ns())}


def only_event(app) -> int:  # type: ignore[no-untyped-def]
    """The id of the one event in the inbox."""
    with app.extensions["receiver"].engine.connect() as conn:
        (event_id,) = conn.execute(text("SELECT id FROM events")).scalars().all()
    return event_id


def test_a_slow_read_does_not_hold_up_a_push(app, client):
    svc = app.extensions["receiver"]
    started, finished = threading.Event(), threading.Event()

    def slow_read() -> None:
        with svc.read_engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.connection.dbapi_connection.create_function("pause", 1, time.sleep)
                started.set()
                conn.execute(text("SELECT pause(1.5)"))
            else:
                started.set()
                conn.execute(text("SELECT pg_sleep(1.5)"))
        finished.set()

    reader = threading.Thread(target=slow_read)
    reader.start()
    assert started.wait(5)
    time.sleep(0.1)
    began = time.monotonic()
    assert client.post(URL, json=push()).status_code == 200
    took = time.monotonic() - began
    still_reading = not finished.is_set()
    reader.join()
    assert still_reading and took < 0.5, f"the push took {took:.2f}s beside a 1.5 s read"


def test_the_inbox_counts_are_cached_for_their_ttl(app, client):
    engine = app.extensions["receiver"].read_engine
    assert client.post(URL, json=push()).status_code == 200
    before = inbox_counts(engine, ttl=0)
    assert sum(before.values()) == 1
    assert client.post(URL, json=push("2542285634920880795")).status_code == 200
    assert inbox_counts(engine, ttl=60) == before  # within the ttl: no new scan
    assert sum(inbox_counts(engine, ttl=0).values()) == 2


def shared_counts(app):  # type: ignore[no-untyped-def]
    """The inbox's counts as /metrics and the admin pages of `app` take them."""
    svc = app.extensions["receiver"]
    return current_counts(svc)


def fresh_apps(make_app, n: int, ttl: float):  # type: ignore[no-untyped-def]
    """`n` apps, as if gunicorn's processes, and no counts shared yet."""
    apps = [make_app(counts_ttl=ttl) for _ in range(n)]
    svc = apps[0].extensions["receiver"]
    svc.redis.delete(svc.key("inbox-counts"), svc.key("inbox-counts:lock"))
    return apps


def test_processes_share_one_count_of_the_inbox(client, make_app):
    first, second = fresh_apps(make_app, 2, ttl=60)
    assert client.post(URL, json=push()).status_code == 200
    counted = shared_counts(first)
    assert sum(counted.values()) == 1
    assert client.post(URL, json=push("2542285634920880795")).status_code == 200
    assert shared_counts(second) == counted  # the first process's count: the second did not scan


def test_a_count_whose_process_died_holds_the_others_off_until_its_lock_expires(client, make_app):
    first, second = fresh_apps(make_app, 2, ttl=0.3)
    assert client.post(URL, json=push()).status_code == 200
    counted = shared_counts(first)
    time.sleep(0.4)  # the count is out of date: the next read counts again, unless another process is
    svc = first.extensions["receiver"]
    svc.redis.set(svc.key("inbox-counts:lock"), "1", px=1000)  # a process took the lock, then died
    assert client.post(URL, json=push("2542285634920880795")).status_code == 200
    assert shared_counts(second) == counted  # the last count, rather than a wait or a scan
    time.sleep(1.1)
    assert sum(shared_counts(second).values()) == 2  # the lock expired: this one counted


def test_without_redis_a_process_counts_for_itself(client, make_app):
    alone = make_app(counts_ttl=60, broker_url="redis://127.0.0.1:1/0")
    assert client.post(URL, json=push()).status_code == 200
    assert sum(shared_counts(alone).values()) == 1


@pytest.mark.parametrize("url", ["/api/events?page=²", "/api/events?per_page=٣", "/api/events?page=" + "9" * 5000,
                                 "/admin/events?page=²", "/admin/events?page=0", "/admin/events?page=1001", "/api/events?page=1001",
                                 "/admin/orders?page=0", "/admin/orders?since=1x", "/admin/changes?since=99999d"])
def test_a_page_argument_that_is_not_a_plain_number_is_a_400(client, url):
    headers = ADMIN if url.startswith("/admin") else {"Authorization": f"Bearer {API_TOKEN}"}
    resp = client.get(url, headers=headers)
    assert resp.status_code == 400


def test_a_large_deep_body_is_shown_raw_and_cut_with_a_download(app, client):
    deep = "[" * 900 + "]" * 900
    body = json.dumps(push(deep=json.loads(deep), pad="x" * 700_000)).encode()
    assert client.post(URL, data=body, content_type="application/json").status_code == 200
    event_id = only_event(app)
    began = time.monotonic()
    page = client.get(f"/admin/events/{event_id}", headers=ADMIN)
    took = time.monotonic() - began
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and len(html) < 200_000, f"{len(html)} bytes of HTML in {took:.2f}s"
    assert "Download the body as received" in html and "cut to its first" in html
    download = client.get(f"/admin/events/{event_id}/body", headers=ADMIN)
    assert download.data == body and download.headers["Content-Disposition"].startswith("attachment")


def test_a_small_body_is_indented_whole(app, client):
    assert client.post(URL, json=push(note="short")).status_code == 200
    html = client.get(f"/admin/events/{only_event(app)}", headers=ADMIN).get_data(as_text=True)
    assert '\n  &#34;messageType&#34;: &#34;ORDER_CREATE&#34;' in html and "cut to its first" not in html
