"""Alerts: raised by the rules, once per incident, delivered to the webhook, Slack and e-mail sinks."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest
from sqlalchemy import select

from receiver import alerts
from receiver.config import Rule
from receiver.models import Alert, AlertStatus, EventStatus
from tests.conftest import TOKENS, wait_for
from tests.workers.test_refetch import ALIBABA, events_when, order_when, send


@pytest.fixture
def provider(sandbox):  # type: ignore[no-untyped-def]
    """The loopback provider behind the `demo` source."""
    return sandbox.providers["xportcn"]


def stored(app) -> list[Alert]:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].Session() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def delivered(app, sinks, rule: str) -> Alert:  # type: ignore[no-untyped-def]
    """Wait until an alert of `rule` reached all three sinks; return it."""
    def done():  # type: ignore[no-untyped-def]
        found = [a for a in stored(app) if a.rule == rule and a.status == AlertStatus.DELIVERED]
        return found[0] if found and len(sinks.posts) >= 2 and sinks.mails else None
    return wait_for(done)


def test_price_correction_alert_reaches_every_sink_once(app, client, provider, worker, sinks):
    send(client, provider, ALIBABA, "ORDER_CREATE")
    order_when(client, ALIBABA)
    message_type = provider.correct_price(ALIBABA, -2335)  # 10% off 233.44, rounded to the fen
    for _ in range(2):  # the same correction announced twice
        send(client, provider, ALIBABA, message_type)
    alert = delivered(app, sinks, "price_corrected")
    assert "233.44 -> 210.09 CNY (-10.00%)" in alert.title and alert.order_id == ALIBABA
    hook = dict(sinks.posts)["/hook"]
    assert hook["rule"] == "price_corrected" and hook["detail"]["percent"] == -10.0
    assert "-10.00%" in dict(sinks.posts)["/slack"]["text"]
    assert "Price corrected" in sinks.mails[0]["Subject"] and sinks.mails[0]["To"] == "ops@example.com"
    assert [a.rule for a in stored(app)] == ["price_corrected"]
    assert sorted(alert.sinks.split(",")) == ["email", "slack", "webhook"]


def test_refund_and_seller_close_raise_their_alerts(app, client, provider, worker, sinks):
    send(client, provider, ALIBABA, "ORDER_CREATE")
    order_when(client, ALIBABA)
    send(client, provider, ALIBABA, provider.refund(ALIBABA, 700))
    order_when(client, ALIBABA, refund_amount=700)
    send(client, provider, ALIBABA, provider.set_status(ALIBABA, 6))
    order_when(client, ALIBABA, status="cancelled")
    rules = wait_for(lambda: (r := {a.rule: a for a in stored(app)}) and len(r) == 2 and r)
    assert "7.00 CNY" in rules["refund"].title
    assert "is cancelled (was awaiting_payment)" in rules["order_closed"].title


def test_dead_letter_raises_one_alert(app, client, sandbox, provider, worker, sinks):
    sandbox.faults.broken_orders[ALIBABA] = (1001, "order frozen")
    send(client, provider, ALIBABA, "ORDER_CREATE")
    events_when(app, EventStatus.DEAD)
    alert = delivered(app, sinks, "dead_letter")
    assert "order frozen" in alert.title and alert.source == "demo" and alert.order_id == ALIBABA


def test_refused_pushes_above_the_rate_raise_one_alert(app, client, sinks):
    for _ in range(8):
        assert client.post("/callbacks/demo?token=wrong-token-0123456789", json={}).status_code == 401
    [alert] = wait_for(lambda: stored(app))  # counted by a thread, off the request
    assert alert.rule == "push_rejections" and alert.source == "demo"
    assert 5 <= json.loads(alert.detail)["count"] <= 8 and "refused pushes for demo within a minute" in alert.title
    time.sleep(0.3)
    assert len(stored(app)) == 1  # one alert, however the refusals were batched


def test_disabled_rule_raises_nothing(app, make_app):
    settings = app.extensions["receiver"].settings
    off = dataclasses.replace(settings.alerts, rules={**settings.alerts.rules, "price_corrected": Rule(enabled=False)})
    quiet = make_app(alerts=off)
    with quiet.app_context():
        assert alerts.raise_alert(quiet.extensions["receiver"], "price_corrected", "k", "t", {}) is None
        assert alerts.raise_alert(quiet.extensions["receiver"], "refund", "k", "t", {}) is not None
        assert alerts.raise_alert(quiet.extensions["receiver"], "refund", "k", "t", {}) is None  # same incident


def test_queue_backlog_alert(app, make_app):
    settings = app.extensions["receiver"].settings
    strict = dataclasses.replace(settings.alerts, rules={**settings.alerts.rules, "queue_backlog": Rule(threshold=2)})
    idle = make_app(alerts=strict, namespace=f"{settings.namespace}-idle")  # a queue no worker reads
    with idle.app_context():
        from receiver.dispatch import enqueue
        from workers.tasks import check_backlog

        for event_id in (1, 2, 3):
            enqueue(event_id)
        try:
            assert check_backlog() == 3
        finally:
            idle.extensions["receiver"].redis.delete(f"{settings.namespace}-idle")
    [alert] = stored(app)
    assert alert.rule == "queue_backlog" and "3 tasks wait" in alert.title


def test_unknown_rule_in_config_is_named(tmp_path):
    from receiver.config import load_settings
    from receiver.errors import ConfigError

    path = tmp_path / "s.toml"
    path.write_text(f'[sources.demo]\nfamily = "xportcn"\nbase_url = "http://x.test"\naccess_key = "a"\naccess_secret = "b"\n'
                    f'user_id = "c"\ncallback_token = "{TOKENS["demo"]}"\n[alerts.rules.weather]\nenabled = true\n')
    with pytest.raises(ConfigError, match="alerts.rules"):
        load_settings({"RECEIVER_SOURCES_FILE": str(path)})


def test_the_same_incident_raises_again_after_its_dedupe_window(app, make_app):
    settings = app.extensions["receiver"].settings
    short = make_app(alerts=dataclasses.replace(settings.alerts, dedupe_window=1))
    with short.app_context():
        svc = short.extensions["receiver"]
        time.sleep(1 - time.time() % 1 + 0.01)  # the start of a window
        first = alerts.raise_alert(svc, "refund", "demo:1:515", "t", {})
        assert first is not None and alerts.raise_alert(svc, "refund", "demo:1:515", "t", {}) is None
        time.sleep(1.05)
        assert alerts.raise_alert(svc, "refund", "demo:1:515", "t", {}) not in (None, first)
