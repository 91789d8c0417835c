"""Coalescing, the shared rate limit, the sweeper, dead letters and replay, with the real worker."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.models import EventStatus
from receiver.ratelimit import RateLimiter
from tests.conftest import wait_for
from tests.workers.test_refetch import ALIBABA, AUTH, events, events_when, order_when, send


@pytest.fixture
def provider(sandbox):  # type: ignore[no-untyped-def]
    """The loopback provider behind the `demo` source."""
    return sandbox.providers["xportcn"]


def test_a_burst_for_one_order_costs_at_most_two_refetches(app, client, sandbox, provider, worker):
    sent_ms = int(time.time() * 1000)
    for i in range(10):
        # Each message its own millisecond, as the provider stamps them: pushes of one type for one
        # order with the same timestamp are duplicates by the family's dedupe key.
        message_type = provider.correct_price(ALIBABA, -10)
        assert send(client, provider, ALIBABA, message_type, at_ms=sent_ms + i).status_code == 200
    events_when(app, *[EventStatus.PROCESSED] * 10)
    assert order_when(client, ALIBABA)["total_amount"] == 23344 - 100
    assert 1 <= sandbox.fetches(ALIBABA) <= 2


def test_a_push_during_a_refetch_gets_a_refetch_after_it(app, client, sandbox, provider, worker):
    sandbox.faults.latency = 0.6  # the first re-fetch is still running when the second push arrives
    send(client, provider, ALIBABA, "ORDER_CREATE")
    wait_for(lambda: _in_flight(app))
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -300))
    events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED)
    assert order_when(client, ALIBABA)["total_amount"] == 23344 - 300
    assert sandbox.fetches(ALIBABA) == 2


def _in_flight(app) -> bool:  # type: ignore[no-untyped-def]
    """The first event's re-fetch has started (its attempt is counted before the call)."""
    evs = events(app)
    return bool(evs) and evs[0].attempts == 1


def test_rate_limit_is_shared_by_every_worker(app):
    services = app.extensions["receiver"]
    one, two = (RateLimiter(services.redis, services.key("ratelimit-test")) for _ in range(2))
    services.redis.delete(services.key("ratelimit-test", "src"))
    assert [one.wait_ms("src", 1.0, 2), two.wait_ms("src", 1.0, 2)] == [0, 0]  # the burst
    assert one.wait_ms("src", 1.0, 2) > 0 and two.wait_ms("src", 1.0, 2) > 0  # then a token a second


def test_sweeper_queues_what_redis_could_not_take(app, client, make_app, provider, worker):
    down = make_app(broker_url="redis://127.0.0.1:1/0")
    headers, body = provider.push(ALIBABA, "ORDER_CREATE")
    assert down.test_client().post(f"/callbacks/demo?token={app.extensions['receiver'].settings.sources['demo'].callback_token}", data=body, headers=headers).status_code == 200
    assert [e.status for e in events(app)] == [EventStatus.RECEIVED]
    sweeper = make_app(sweep_grace=1)
    with sweeper.app_context():
        from workers.tasks import sweep_inbox

        assert wait_for(lambda: sweep_inbox(), timeout=5) == 1
    events_when(app, EventStatus.PROCESSED)
    assert order_when(client, ALIBABA)["total_amount"] == 23344


def test_dead_letter_is_replayed_after_the_fix(app, client, sandbox, provider, worker, environ, monkeypatch):
    sandbox.faults.broken_orders[ALIBABA] = (1001, "order is locked")
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [dead] = events_when(app, EventStatus.DEAD)
    assert "order is locked" in dead.last_error
    del sandbox.faults.broken_orders[ALIBABA]
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["events", "replay", "--status", "dead", "--source", "demo"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1" in result.output
    [event] = events_when(app, EventStatus.PROCESSED)
    assert event.id == dead.id and event.last_error is None
    assert client.get(f"/api/orders/demo/{ALIBABA}", headers=AUTH).status_code == 200


def test_replay_by_id_and_show(app, client, provider, worker, environ, monkeypatch):
    send(client, provider, ALIBABA, "ORDER_CREATE")
    [event] = events_when(app, EventStatus.PROCESSED)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    shown = runner.invoke(main, ["events", "show", str(event.id)])
    assert shown.exit_code == 0 and ALIBABA in shown.output and "processed" in shown.output
    assert "replayed 1 of 1" in runner.invoke(main, ["events", "replay", str(event.id)]).output
    events_when(app, EventStatus.PROCESSED)
    assert runner.invoke(main, ["events", "replay"]).exit_code != 0  # neither ids nor --status


def test_urls_in_a_push_are_never_fetched(app, client, sinks, worker):
    trap = f"{sinks.url}/trap"
    body = {"orderId": ALIBABA, "callbackUrl": trap, "detailUrl": trap, "imageUrl": trap}
    push = {"messageType": "ORDER_CREATE", "messageBody": body, "messagePlatform": 1, "timestamp": "1"}
    token = app.extensions["receiver"].settings.sources["demo"].callback_token
    assert client.post(f"/callbacks/demo?token={token}", json=push).status_code == 200
    events_when(app, EventStatus.PROCESSED)
    assert not [path for path, _ in sinks.posts if path.startswith("/trap")]
