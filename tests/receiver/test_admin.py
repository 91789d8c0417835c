"""/admin with the test client: who gets in, the inbox filters, an event's page, and CSRF on replays."""
from __future__ import annotations

import base64
import re
import time
from types import SimpleNamespace

import itsdangerous.timed
import pytest

from receiver.admin import CSRF_TTL, csrf_token
from receiver.models import Event, EventStatus
from tests.conftest import API_TOKEN, TOKENS
from tests.workers.test_refetch import ALIBABA, events_when, send


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("anyone", API_TOKEN)


def page_token(client, url: str = "/admin/events") -> str:  # type: ignore[no-untyped-def]
    """The CSRF token a page's forms carry."""
    html = client.get(url, headers=ADMIN).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def status_of(app, event_id: int) -> str:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return session.get(Event, event_id).status


@pytest.mark.parametrize("headers", [
    {},
    basic("admin", "wrong-password-0123456789"),
    basic(API_TOKEN, ""),
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": "Basic !!!not-base64"},
    {"Authorization": f"Token {API_TOKEN}"},
], ids=["none", "wrong-password", "token-as-user", "wrong-bearer", "garbled", "other-scheme"])
def test_without_the_token_the_browser_is_asked_for_it(client, headers):
    for method, url in (("GET", "/admin/"), ("GET", "/admin/events/1"), ("POST", "/admin/events/1/replay")):
        resp = client.open(url, method=method, headers=headers)
        assert resp.status_code == 401, url
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="receiver admin"'
        assert resp.mimetype == "text/html" and "API token" in resp.get_data(as_text=True)


def test_the_token_as_basic_password_or_bearer_lets_in(client):
    for headers in (ADMIN, basic("", API_TOKEN), {"Authorization": f"Bearer {API_TOKEN}"}):
        resp = client.get("/admin/", headers=headers)
        assert resp.status_code == 200 and resp.mimetype == "text/html"
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"


def test_without_a_configured_token_nobody_gets_in(make_app):
    closed = make_app(api_token=None).test_client()
    assert closed.get("/admin/", headers=basic("x", "")).status_code == 401
    assert closed.get("/admin/", headers={"Authorization": "Bearer "}).status_code == 401


def test_inbox_filters_by_status_source_and_order(client, stored_event):
    dead = stored_event("demo", EventStatus.DEAD, "A-1", last_error="provider code 1001: locked")
    done = stored_event("demo", EventStatus.PROCESSED, "A-2")
    other = stored_event("daji", EventStatus.DEAD, "B-1")

    def listed(**query: str) -> set[int]:
        html = client.get("/admin/events", query_string=query, headers=ADMIN).get_data(as_text=True)
        return {int(i) for i in re.findall(r'<tr id="event-(\d+)"', html)}

    assert listed() == {dead, done, other}
    assert listed(status="dead") == {dead, other}
    assert listed(source="demo") == {dead, done}
    assert listed(status="dead", source="demo") == {dead}
    assert listed(order="A-2") == {done}
    html = client.get("/admin/events", query_string={"source": "demo"}, headers=ADMIN).get_data(as_text=True)
    assert 'id="tab-dead">dead (1)' in html and 'id="tab-processed">processed (1)' in html
    assert "provider code 1001: locked" in html
    assert 'id="replay-dead-daji"' in html and 'id="replay-dead-demo"' in html
    resp = client.get("/admin/events", query_string={"status": "nonsense"}, headers=ADMIN)
    assert resp.status_code == 400 and resp.mimetype == "text/html" and "status must be one of" in resp.get_data(as_text=True)
    assert client.get("/admin/events", query_string={"page": "0"}, headers=ADMIN).status_code == 400
    # The inbox used to be the front page: its old links still land on it, filters kept.
    resp = client.get("/admin/", query_string={"status": "dead", "source": "demo"}, headers=ADMIN)
    assert resp.status_code == 302 and resp.location == "/admin/events?status=dead&source=demo"


def test_event_page_shows_raw_body_headers_attempts_error_and_the_orders_history(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    events_when(app, EventStatus.PROCESSED)  # fetched once, so that the correction shows in the history
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -150))
    first, second = events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED)
    html = client.get(f"/admin/events/{second.id}", headers=ADMIN).get_data(as_text=True)
    assert f'id="status">{EventStatus.PROCESSED}<' in html
    assert "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY" in html and ALIBABA in html  # the body
    assert "<th>access-key</th><td>ak-demo</td>" in html  # the headers we keep
    assert 'id="attempts">1<' in html
    assert "<td>total_amount</td><td>233.44 CNY</td><td>231.94 CNY</td>" in html  # the history, in yuan
    assert f"event:{second.id}" in html
    assert f'href="/admin/events/{first.id}"' in html  # the order's other events

    sandbox.faults.broken_orders[ALIBABA] = (1001, "order is locked")
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -1))
    *_, dead = events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED, EventStatus.DEAD)
    html = client.get(f"/admin/events/{dead.id}", headers=ADMIN).get_data(as_text=True)
    assert 'id="status">dead<' in html and "order is locked" in html
    assert client.get("/admin/events/999999", headers=ADMIN).status_code == 404


def test_a_replay_needs_the_pages_csrf_token(app, client, stored_event, monkeypatch):
    event_id = stored_event("demo", EventStatus.DEAD, "A-1")
    with app.app_context():
        token = csrf_token()
        monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: time.time() - CSRF_TTL - 60))
        expired = csrf_token()
        monkeypatch.undo()
    forged = token.rsplit(".", 1)[0] + "." + "A" * 27
    for form in ({}, {"csrf_token": ""}, {"csrf_token": forged}, {"csrf_token": expired}, {"csrf_token": "12.34"}):
        resp = client.post(f"/admin/events/{event_id}/replay", data=form, headers=ADMIN)
        assert resp.status_code == 403 and resp.mimetype == "text/html", form
        assert client.post("/admin/replay-dead", data={**form, "source": "demo"}, headers=ADMIN).status_code == 403
    assert "too old" in client.post(f"/admin/events/{event_id}/replay", data={"csrf_token": expired}, headers=ADMIN).get_data(as_text=True)
    assert status_of(app, event_id) == EventStatus.DEAD
    resp = client.post(f"/admin/events/{event_id}/replay", data={"csrf_token": page_token(client)}, headers=ADMIN)
    assert resp.status_code == 303 and resp.location.endswith(f"/admin/events/{event_id}?replayed=1")
    assert status_of(app, event_id) != EventStatus.DEAD


def test_replay_all_dead_of_one_source(app, client, stored_event):
    ours = [stored_event("demo", EventStatus.DEAD) for _ in range(2)]
    theirs = stored_event("daji", EventStatus.DEAD)
    token = page_token(client)
    resp = client.post("/admin/replay-dead", data={"csrf_token": token, "source": "demo"}, headers=ADMIN)
    assert resp.status_code == 303 and "replayed=2+of+2" in resp.location
    assert [status_of(app, i) != EventStatus.DEAD for i in ours] == [True, True]
    assert status_of(app, theirs) == EventStatus.DEAD
    assert client.post("/admin/replay-dead", data={"csrf_token": token, "source": "nobody"}, headers=ADMIN).status_code == 400


def test_an_ignored_events_page_says_why(app, client):
    body = {"messageType": "SHOP_NOTICE", "messageBody": {"notice": "closed on Sunday"}, "messagePlatform": 1, "timestamp": "1779263269913"}
    assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", json=body).status_code == 200
    [event] = events_when(app, EventStatus.IGNORED)
    html = client.get(f"/admin/events/{event.id}", headers=ADMIN).get_data(as_text=True)
    assert 'id="ignored-reason">the summary body names no order id<' in html
    assert "the summary body names no order id" in client.get("/admin/events?status=ignored", headers=ADMIN).get_data(as_text=True)
