"""/admin's order pages and today's changes, with the test client, a real worker and the loopback provider."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from receiver.models import EventStatus, Order, OrderChange, utcnow
from tests.receiver.test_admin import ADMIN, page_token
from tests.workers.test_refetch import ALIBABA, TAOBAO, events_when, order_when, send


def text(client, url: str, **query: str) -> str:  # type: ignore[no-untyped-def]
    resp = client.get(url, query_string=query, headers=ADMIN)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_data(as_text=True)


def test_find_an_order_by_any_id_and_read_its_timeline_in_yuan(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    first = order_when(client, ALIBABA)
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -150))
    order_when(client, ALIBABA, total_amount=first["total_amount"] - 150)
    _, correction = events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED)

    page = f"/admin/orders/demo/{ALIBABA}"
    for any_id in (ALIBABA, first["order_no"]):
        resp = client.get("/admin/orders", query_string={"q": any_id}, headers=ADMIN)
        assert resp.status_code == 303 and resp.location == page, any_id
    html = text(client, page)
    assert 'id="total">231.94 CNY<' in html and 'id="version">2<' in html
    timeline = html[html.index('id="timeline"'):html.index("Events naming this order")]
    # The correction comes first, caused by its push, amounts in yuan.
    assert f'href="/admin/events/{correction.id}">push {correction.id}</a>' in timeline
    assert '<li>total_amount: <span class="old">233.44 CNY</span> → <span class="new">231.94 CNY</span></li>' in timeline
    assert timeline.index("231.94 CNY") < timeline.index("<li>status:")  # newest first
    assert f'id="event-{correction.id}"' in html  # the order's events
    # The event links back to the order.
    assert f'href="{page}" id="order-link"' in text(client, f"/admin/events/{correction.id}")
    assert "0 order(s) with the id nobody" in text(client, "/admin/orders", q="nobody")


def test_refetch_now_goes_through_the_pipeline_and_makes_a_new_version(app, client, sandbox, worker):
    provider = sandbox.providers["xportcn"]
    send(client, provider, TAOBAO, "ORDER_CREATE")
    before = order_when(client, TAOBAO)
    provider.correct_price(TAOBAO, -230)  # no push: only a re-fetch can see it
    url = f"/admin/orders/demo/{TAOBAO}/refetch"
    assert client.post(url, data={}, headers=ADMIN).status_code == 403  # CSRF
    resp = client.post(url, data={"csrf_token": page_token(client, f"/admin/orders/demo/{TAOBAO}")}, headers=ADMIN)
    assert resp.status_code == 303 and resp.location == f"/admin/orders/demo/{TAOBAO}?refetch=queued"
    after = order_when(client, TAOBAO, version=before["version"] + 1)
    assert after["total_amount"] == before["total_amount"] - 230
    html = text(client, f"/admin/orders/demo/{TAOBAO}")
    assert "a re-fetch with no push" in html
    assert client.post("/admin/orders/demo/nobody/refetch", data={"csrf_token": page_token(client, f"/admin/orders/demo/{TAOBAO}")}, headers=ADMIN).status_code == 404


def seed(app, source: str, pid: str, order_no: str, changes: list[tuple[str, str | None, str]], ago: timedelta, status: str = "shipped") -> None:  # type: ignore[no-untyped-def]
    """An order with recorded changes, written as a re-fetch would have left it."""
    at = utcnow() - ago
    with app.extensions["receiver"].Session.begin() as session:
        order = Order(source=source, platform="1688", provider_order_id=pid, order_no=order_no, status=status, raw_status=status,
                      total_amount=23100, fetched_at=at, changed_at=at, version=len(changes))
        order.changes = [OrderChange(field=f, old=old, new=new, at=at, cause="event:7") for f, old, new in changes]
        session.add(order)


def test_the_list_is_newest_change_first_and_filters(app, client):
    seed(app, "demo", "A-OLD", "N-1", [("status", "awaiting_shipment", "shipped")], timedelta(days=2))
    seed(app, "demo", "A-NEW", "N-2", [("total_amount", "23344", "23100")], timedelta(minutes=5), status="awaiting_payment")
    seed(app, "daji", "B-MID", "N-3", [("refund_amount", "0", "505")], timedelta(hours=3))

    def listed(**query: str) -> list[str]:
        return re.findall(r'<tr id="order-\w+-([\w-]+)"', text(client, "/admin/orders", **query))

    assert listed() == ["A-NEW", "B-MID", "A-OLD"]
    assert listed(source="demo") == ["A-NEW", "A-OLD"]
    assert listed(status="shipped") == ["B-MID", "A-OLD"]
    assert listed(since="1d") == ["A-NEW", "B-MID"]
    assert listed(since=(utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")) == ["A-NEW"]
    assert "231.00 CNY" in text(client, "/admin/orders", source="demo")
    assert client.get("/admin/orders", query_string={"status": "lost"}, headers=ADMIN).status_code == 400


def test_changes_of_the_day_with_totals_per_source_and_a_csv(app, client):
    seed(app, "demo", "A-1", "N-1", [("total_amount", "23344", "23189"), ("discount", "0", "155"),
                                     ("status", "awaiting_payment", "awaiting_shipment")], timedelta(hours=2))  # not a closure
    seed(app, "demo", "=HYPERLINK(\"http://evil\")", "+N-2", [("refund_amount", "0", "505"), ("status", "shipped", "closed")], timedelta(hours=1))
    seed(app, "daji", "B-1", "N-3", [("refund_amount", "505", "1010"), ("refund_amount", "1010", "0")], timedelta(minutes=30))
    seed(app, "daji", "B-OLD", "N-4", [("total_amount", "23344", "100")], timedelta(days=3))  # outside the window
    seed(app, "daji", "B-NEW", "N-5", [("total_amount", None, "23344")], timedelta(minutes=1))  # a first fetch: no change

    html = text(client, "/admin/changes")
    assert "4 change(s)" in html
    demo = re.search(r'<tr id="totals-demo">(.*?)</tr>', html).group(1)  # type: ignore[union-attr]
    assert re.findall(r'class="num">([^<]*)<', demo) == ["1", "-1.55 CNY", "1", "5.05 CNY", "1"]
    daji = re.search(r'<tr id="totals-daji">(.*?)</tr>', html).group(1)  # type: ignore[union-attr]
    assert re.findall(r'class="num">([^<]*)<', daji) == ["0", "0.00 CNY", "1", "5.05 CNY", "0"]
    assert "B-OLD" not in html and "B-NEW" not in html
    assert "2 change(s)" in text(client, "/admin/changes", source="daji", since="4d")
    assert "4 change(s)" in text(client, "/admin/changes", since="")  # a cleared field: the default day

    resp = client.get("/admin/changes.csv", headers=ADMIN)
    assert resp.status_code == 200 and resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [(r["order"], r["kind"], r["old"], r["new"], r["change_yuan"], r["change_fen"]) for r in rows] == [
        ("B-1", "refund", "5.05", "10.10", "5.05", "505"),
        ("'=HYPERLINK(\"http://evil\")", "closed", "shipped", "closed", "", ""),
        ("'=HYPERLINK(\"http://evil\")", "refund", "0.00", "5.05", "5.05", "505"),
        ("A-1", "price", "233.44", "231.89", "-1.55", "-155"),  # a number a spreadsheet can add up
    ]
    assert rows[1]["order_no"] == "'+N-2" and rows[0]["cause"] == "event:7"


def test_refetch_now_with_the_queue_down_is_a_503_that_says_so(app, client, make_app, sandbox, worker):
    send(client, sandbox.providers["xportcn"], TAOBAO, "ORDER_CREATE")
    order_when(client, TAOBAO)
    down = make_app(broker_url="redis://127.0.0.1:1/0").test_client()
    token = page_token(client, f"/admin/orders/demo/{TAOBAO}")
    resp = down.post(f"/admin/orders/demo/{TAOBAO}/refetch", data={"csrf_token": token}, headers=ADMIN)
    assert resp.status_code == 503 and "queue" in resp.get_data(as_text=True)


def test_an_order_is_found_by_its_purchase_id_and_opens_whatever_its_id_holds(app, client, stored_event):
    at = utcnow() - timedelta(minutes=5)
    with app.extensions["receiver"].Session.begin() as session:
        session.add(Order(source="demo", platform="taobao", provider_order_id="PO/2026/77", order_no="N-9", purchase_id="P-4711",
                          status="shipped", raw_status="shipped", total_amount=6330, fetched_at=at, changed_at=at, version=1))
    by_order_no = stored_event(order_id="N-9")  # a push that named the order by another of its ids
    resp = client.get("/admin/orders", query_string={"q": "P-4711"}, headers=ADMIN)
    assert resp.status_code == 303 and resp.location == "/admin/orders/demo/PO/2026/77"
    html = text(client, resp.location)
    assert 'id="total">63.30 CNY<' in html and f'id="event-{by_order_no}"' in html
    assert 'action="/admin/orders/demo/PO/2026/77/refetch"' in html
