"""Alert rules, thresholds and the dedupe window, on a SQLite file with a frozen clock: no Redis, no worker."""
from __future__ import annotations

import dataclasses
import json
import smtplib
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select

from receiver import alerts
from receiver.config import RULE_DEFAULTS, AlertSettings, EmailSink, Rule
from receiver.errors import TransientProviderError
from receiver.models import Alert, AlertStatus
from receiver.orders import Change

pytestmark = pytest.mark.unit

WINDOW = 600
T0 = 1_779_264_000.0  # a window's first second: 2026-05-20T08:00:00Z, 2965440 windows of 600 s since the epoch
ORDER = "2542285634920880794"


@pytest.fixture
def svc(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """unit_services with thresholds worth testing, no sinks, and alerts' clock stopped at T0."""
    rules = {**{name: Rule(True, t) for name, t in RULE_DEFAULTS.items()}, "price_corrected": Rule(True, 0.5),
             "refund": Rule(True, 500.0), "push_rejections": Rule(True, 5.0)}
    unit_services.settings = dataclasses.replace(unit_services.settings, alerts=AlertSettings(rules=rules, dedupe_window=WINDOW))
    at(monkeypatch, T0)
    return unit_services


def at(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    """Set alerts' clock to `now` (seconds since the epoch)."""
    monkeypatch.setattr(alerts, "time", SimpleNamespace(time=lambda: now))


def stored(svc: Any) -> list[Alert]:
    with svc.Session() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def with_alerts(svc: Any, **changes: Any) -> None:
    svc.settings = dataclasses.replace(svc.settings, alerts=dataclasses.replace(svc.settings.alerts, **changes))


# --- raise_alert and the dedupe window ----------------------------------------------------------
def test_an_alert_is_stored_with_everything_people_read(svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    alert_id = alerts.raise_alert(svc, "refund", "demo:X:515", "Refund on demo", {"refunded": 515, "b": [1, 2]}, "demo", ORDER)
    [alert] = stored(svc)
    assert alert.id == alert_id
    assert (alert.rule, alert.source, alert.order_id, alert.title) == ("refund", "demo", ORDER, "Refund on demo")
    assert alert.dedupe_key == f"refund:demo:X:515:{int(T0 // WINDOW)}"
    assert alert.detail == '{"b": [1, 2], "refunded": 515}'
    assert (alert.status, alert.sinks, alert.attempts, alert.last_error) == (AlertStatus.PENDING, "", 0, None)
    assert f"alert.refund source=demo order={ORDER} Refund on demo" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_an_alert_without_source_or_order_logs_dashes(svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    alerts.raise_alert(svc, "queue_backlog", "queue", "Backlog of 1500 tasks", {"waiting": 1500})
    assert "alert.queue_backlog source=- order=- Backlog of 1500 tasks" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_the_same_incident_is_raised_once_per_window(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = alerts.raise_alert(svc, "order_closed", "demo:1", "closed", {})
    assert first is not None
    for later in (1, 60, WINDOW - 1):
        at(monkeypatch, T0 + later)
        assert alerts.raise_alert(svc, "order_closed", "demo:1", "closed", {}) is None
    at(monkeypatch, T0 + WINDOW)  # the next window: the incident is raised again
    second = alerts.raise_alert(svc, "order_closed", "demo:1", "closed", {})
    assert second is not None and second != first
    assert [a.dedupe_key for a in stored(svc)] == [f"order_closed:demo:1:{int(T0) // WINDOW}", f"order_closed:demo:1:{int(T0) // WINDOW + 1}"]


def test_another_incident_in_the_same_window_is_raised(svc: Any) -> None:
    assert alerts.raise_alert(svc, "order_closed", "demo:1", "closed", {}) is not None
    assert alerts.raise_alert(svc, "order_closed", "demo:2", "closed", {}) is not None
    assert alerts.raise_alert(svc, "dead_letter", "demo:1", "dead", {}) is not None  # same key, other rule
    assert len(stored(svc)) == 3


def test_a_window_of_zero_still_dedupes_within_the_second(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with_alerts(svc, dedupe_window=0)
    assert alerts.raise_alert(svc, "order_closed", "k", "t", {}) is not None
    at(monkeypatch, T0 + 0.5)
    assert alerts.raise_alert(svc, "order_closed", "k", "t", {}) is None
    at(monkeypatch, T0 + 1)
    assert alerts.raise_alert(svc, "order_closed", "k", "t", {}) is not None


def test_a_rule_turned_off_raises_nothing(svc: Any) -> None:
    with_alerts(svc, rules={**svc.settings.alerts.rules, "refund": Rule(False, 0.0)})
    assert alerts.raise_alert(svc, "refund", "k", "t", {}) is None
    assert stored(svc) == []


def test_a_very_long_key_is_cut_to_the_column(svc: Any) -> None:
    alerts.raise_alert(svc, "dead_letter", "k" * 400, "t", {})
    [alert] = stored(svc)
    assert alert.dedupe_key == ("dead_letter:" + "k" * 400)[:255]


class FakeCelery:
    """Records the tasks sent; fails when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Any, Any]] = []
        self.fail = fail

    def send_task(self, name: str, args: Any = None, retry: Any = None) -> None:
        if self.fail:
            raise OSError("broker down")
        self.sent.append((name, args, retry))


@pytest.mark.parametrize("sink", [{"webhook_url": "https://hooks.example/a"}, {"slack_webhook_url": "https://hooks.example/s"},
                                  {"email": EmailSink("smtp.example", 25, "r@example.com", ("ops@example.com",))}])
def test_an_alert_with_a_sink_is_queued_for_delivery(svc: Any, sink: dict[str, Any]) -> None:
    with_alerts(svc, **sink)
    app = Flask("unit")
    app.extensions["celery"] = FakeCelery()
    with app.app_context():
        alert_id = alerts.raise_alert(svc, "refund", "k", "t", {})
    assert app.extensions["celery"].sent == [("workers.tasks.deliver_alert", [alert_id], False)]


def test_no_sink_queues_nothing(svc: Any) -> None:
    app = Flask("unit")
    app.extensions["celery"] = FakeCelery()
    with app.app_context():
        alerts.raise_alert(svc, "refund", "k", "t", {})
    assert app.extensions["celery"].sent == []


def test_a_broker_that_fails_leaves_the_alert_stored_and_logged(svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    with_alerts(svc, webhook_url="https://hooks.example/a")
    app = Flask("unit")
    app.extensions["celery"] = FakeCelery(fail=True)
    with app.app_context():
        alert_id = alerts.raise_alert(svc, "refund", "k", "t", {})
    assert alert_id is not None and len(stored(svc)) == 1
    assert f"alert.enqueue_failed alert={alert_id}" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


# --- order_alerts: the rules over a re-fetch's changes -------------------------------------------
def titles(svc: Any) -> list[str]:
    return [a.title for a in stored(svc)]


def test_a_price_correction_over_the_threshold_is_alerted(svc: Any) -> None:
    raised = alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", 23344, 23189), Change("discount", 0, 155)])
    assert len(raised) == 1
    assert titles(svc) == [f"Price corrected on demo order {ORDER}: 233.44 -> 231.89 CNY (-0.66%)"]
    [alert] = stored(svc)
    assert json.loads(alert.detail) == {"old_total": 23344, "new_total": 23189, "percent": -0.66, "currency": "CNY"}
    assert (alert.rule, alert.source, alert.order_id) == ("price_corrected", "demo", ORDER)


@pytest.mark.parametrize(("old", "new", "raised"), [(20000, 20100, True), (20000, 19900, True), (20000, 20099, False),
                                                     (20000, 19901, False), (20000, 20000, False)])
def test_the_price_threshold_is_a_percentage_of_the_old_total(svc: Any, old: int, new: int, raised: bool) -> None:
    assert bool(alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", old, new)])) is raised


def test_a_price_increase_is_signed(svc: Any) -> None:
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", 6330, 7595)])
    assert titles(svc) == [f"Price corrected on demo order {ORDER}: 63.30 -> 75.95 CNY (+19.98%)"]


@pytest.mark.parametrize("old", [None, 0])
def test_a_first_total_or_one_from_nothing_is_no_correction(svc: Any, old: int | None) -> None:
    assert alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", old, 23344)]) == []


def test_two_corrections_in_one_window_are_two_alerts_and_the_same_one_again_is_not(svc: Any) -> None:
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", 23344, 23189)])
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", 23189, 21000)])
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("total_amount", 23344, 23189)])
    assert [a.dedupe_key for a in stored(svc)] == [f"price_corrected:demo:{ORDER}:{n}:{int(T0) // WINDOW}" for n in (23189, 21000)]


def test_a_refund_over_the_threshold_is_alerted(svc: Any) -> None:
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("refund_amount", 515, 1545)])
    assert titles(svc) == [f"Refund on demo order {ORDER}: 10.30 CNY (total refunded 15.45)"]
    [alert] = stored(svc)
    assert json.loads(alert.detail) == {"refunded": 1030, "total_refunded": 1545, "currency": "CNY"}
    assert (alert.rule, alert.dedupe_key) == ("refund", f"refund:demo:{ORDER}:1545:{int(T0) // WINDOW}")


@pytest.mark.parametrize(("old", "new", "raised"), [(0, 500, True), (0, 499, False), (515, 1015, True), (515, 1014, False),
                                                     (1545, 515, False), (515, 515, False)])
def test_the_refund_threshold_is_in_fen_of_one_change(svc: Any, old: int, new: int, raised: bool) -> None:
    assert bool(alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("refund_amount", old, new)])) is raised


def test_a_first_refund_amount_is_no_refund(svc: Any) -> None:
    assert alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("refund_amount", None, 5980)]) == []


@pytest.mark.parametrize("new", ["cancelled", "closed"])
def test_an_order_closed_after_we_saw_it_open_is_alerted(svc: Any, new: str) -> None:
    alerts.order_alerts(svc, "daji", "2257164624870311973", "CNY", [Change("status", "awaiting_shipment", new)])
    assert titles(svc) == [f"Order 2257164624870311973 at daji is {new} (was awaiting_shipment)"]
    [alert] = stored(svc)
    assert json.loads(alert.detail) == {"old": "awaiting_shipment", "new": new}
    assert (alert.source, alert.order_id) == ("daji", "2257164624870311973")
    assert alert.dedupe_key == f"order_closed:daji:2257164624870311973:{int(T0) // WINDOW}"


@pytest.mark.parametrize(("old", "new"), [("awaiting_payment", "shipped"), ("shipped", "completed"), (None, "closed")])
def test_other_status_changes_are_not_alerted(svc: Any, old: str | None, new: str) -> None:
    assert alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("status", old, new)]) == []


def test_one_refetch_can_raise_every_rule(svc: Any) -> None:
    changes = [Change("total_amount", 23344, 0), Change("refund_amount", 0, 23344), Change("status", "shipped", "closed"),
               Change("line:1.refund_amount", 0, 23344)]
    raised = alerts.order_alerts(svc, "demo", ORDER, "CNY", changes)
    assert [a.rule for a in stored(svc)] == ["price_corrected", "refund", "order_closed"] and len(raised) == 3


# --- refused pushes -----------------------------------------------------------------------------
def test_refused_pushes_alert_once_when_a_minute_crosses_the_threshold(svc: Any) -> None:
    minute = int(T0 // 60)
    alerts.note_rejections(svc, "demo", minute, 3)
    assert stored(svc) == []
    alerts.note_rejections(svc, "demo", minute, 2)  # 5: the threshold
    alerts.note_rejections(svc, "demo", minute, 4)  # 9: already alerted this minute
    [alert] = stored(svc)
    assert (alert.rule, alert.source, alert.title) == (
        "push_rejections", "demo", "5 refused pushes for demo within a minute: a misconfigured provider, or an attack")
    assert json.loads(alert.detail) == {"count": 5}
    assert alert.dedupe_key == f"push_rejections:demo:{int(T0) // WINDOW}"
    key = svc.key("rejections", "demo", str(minute))
    assert svc.redis.get(key) == b"9" and svc.redis.expiry[key] == 120


def test_one_batch_jumping_over_the_threshold_alerts(svc: Any) -> None:
    alerts.note_rejections(svc, "thai", int(T0 // 60), 40)
    assert [a.title for a in stored(svc)] == ["40 refused pushes for thai within a minute: a misconfigured provider, or an attack"]


def test_another_minute_counts_afresh(svc: Any) -> None:
    minute = int(T0 // 60)
    alerts.note_rejections(svc, "demo", minute, 4)
    alerts.note_rejections(svc, "demo", minute + 1, 4)
    assert stored(svc) == []


def test_a_redis_that_fails_costs_the_count_not_the_caller(svc: Any) -> None:
    class Down:
        def pipeline(self) -> Any:
            raise RedisConnectionError("down")

    svc.__dict__["redis"] = Down()
    alerts.note_rejections(svc, "demo", int(T0 // 60), 50)
    assert stored(svc) == []


# --- sinks and delivery -------------------------------------------------------------------------
EMAIL = EmailSink("smtp.example", 2525, "receiver@example.com", ("ops@example.com", "buyer@example.com"), "robot", "pw", True)


def test_sinks_lists_the_configured_ones() -> None:
    rules = {n: Rule() for n in RULE_DEFAULTS}
    assert alerts.sinks(AlertSettings(rules)) == []
    assert alerts.sinks(AlertSettings(rules, webhook_url="https://h/a", email=EMAIL)) == ["webhook", "email"]
    assert alerts.sinks(AlertSettings(rules, webhook_url="https://h/a", slack_webhook_url="https://h/s", email=EMAIL)) == [
        "webhook", "slack", "email"]


class FakeHttp:
    """Answers POSTs with the status set for their URL (200 by default), or raises what is set."""

    def __init__(self, **answers: Any) -> None:
        self.answers, self.posts = answers, []  # type: ignore[var-annotated]

    def post(self, url: str, json: Any = None, timeout: float | None = None, allow_redirects: bool = True) -> Any:
        self.posts.append((url, json, timeout, allow_redirects))
        answer = self.answers.get(url.rsplit("/", 1)[-1], 200)
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(status_code=answer)


class FakeSMTP:
    """Stands in for smtplib.SMTP; records what it was asked."""

    sessions: list[FakeSMTP] = []
    fail: Exception | None = None

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.opened, self.calls = (host, port, timeout), []  # type: ignore[var-annotated]
        FakeSMTP.sessions.append(self)

    def __enter__(self) -> FakeSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def starttls(self) -> None:
        self.calls.append(("starttls",))

    def login(self, user: str, password: str) -> None:
        self.calls.append(("login", user, password))

    def send_message(self, msg: Any) -> None:
        if FakeSMTP.fail:
            raise FakeSMTP.fail
        self.calls.append(("send", msg["Subject"], msg["From"], msg["To"], json.loads(msg.get_content())))


@pytest.fixture
def delivering(svc: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """svc with every sink configured, a FakeHttp and a FakeSMTP."""
    with_alerts(svc, webhook_url="https://hooks.example/hook", slack_webhook_url="https://hooks.example/slack", email=EMAIL)
    svc.__dict__["http"] = FakeHttp()
    FakeSMTP.sessions, FakeSMTP.fail = [], None
    monkeypatch.setattr(alerts.smtplib, "SMTP", FakeSMTP)
    return svc


def raise_refund(svc: Any) -> int:
    alerts.order_alerts(svc, "demo", ORDER, "CNY", [Change("refund_amount", 515, 1545)])
    [alert] = stored(svc)
    return alert.id


def test_an_alert_is_delivered_to_every_sink(delivering: Any) -> None:
    svc = delivering
    alert_id = raise_refund(svc)
    assert alerts.deliver(svc, alert_id) == AlertStatus.DELIVERED
    [(hook_url, payload, timeout, redirects), (slack_url, slack, _, _)] = svc.http.posts
    assert (hook_url, timeout, redirects) == ("https://hooks.example/hook", 10, False)
    assert {k: payload[k] for k in ("rule", "title", "source", "order_id", "detail")} == {
        "rule": "refund", "title": f"Refund on demo order {ORDER}: 10.30 CNY (total refunded 15.45)", "source": "demo",
        "order_id": ORDER, "detail": {"refunded": 1030, "total_refunded": 1545, "currency": "CNY"}}
    assert payload["created_at"].startswith("20")
    assert slack_url == "https://hooks.example/slack"
    assert slack == {"text": f"*Refund on demo order {ORDER}: 10.30 CNY (total refunded 15.45)*\n• currency: CNY\n"
                             "• refunded: 1030\n• total_refunded: 1545"}
    [smtp] = FakeSMTP.sessions
    assert smtp.opened == ("smtp.example", 2525, 10)
    assert smtp.calls[:2] == [("starttls",), ("login", "robot", "pw")]
    assert smtp.calls[2][:4] == ("send", f"[receiver] Refund on demo order {ORDER}: 10.30 CNY (total refunded 15.45)",
                                 "receiver@example.com", "ops@example.com, buyer@example.com")
    assert smtp.calls[2][4] == payload
    [alert] = stored(svc)
    assert (alert.status, alert.sinks, alert.attempts, alert.last_error) == (AlertStatus.DELIVERED, "email,slack,webhook", 1, None)
    assert alert.delivered_at is not None
    assert alerts.deliver(svc, alert_id) == "nothing to do"  # delivered: never twice


def test_a_plain_smtp_sink_neither_starts_tls_nor_logs_in(delivering: Any) -> None:
    svc = delivering
    with_alerts(svc, email=dataclasses.replace(EMAIL, starttls=False, username=None, password=None))
    alerts.deliver(svc, raise_refund(svc))
    assert [c[0] for c in FakeSMTP.sessions[0].calls] == ["send"]


def test_a_login_without_a_password_sends_an_empty_one(delivering: Any) -> None:
    svc = delivering
    with_alerts(svc, email=dataclasses.replace(EMAIL, password=None))
    alerts.deliver(svc, raise_refund(svc))
    assert ("login", "robot", "") in FakeSMTP.sessions[0].calls


def test_a_failing_sink_is_retried_alone_and_its_error_names_no_url(delivering: Any) -> None:
    svc = delivering
    svc.http.answers = {"hook": 502, "slack": requests.ConnectionError("https://hooks.example/slack?token=secret")}
    alert_id = raise_refund(svc)
    with pytest.raises(TransientProviderError) as err:
        alerts.deliver(svc, alert_id)
    assert err.value.message == "webhook: HTTP 502; slack: ConnectionError"
    [alert] = stored(svc)
    assert (alert.status, alert.sinks, alert.attempts, alert.last_error, alert.delivered_at) == (
        AlertStatus.PENDING, "email", 1, "webhook: HTTP 502; slack: ConnectionError", None)
    svc.http.answers, svc.http.posts = {"hook": 204}, []
    FakeSMTP.sessions = []
    assert alerts.deliver(svc, alert_id) == AlertStatus.DELIVERED
    assert [url for url, *_ in svc.http.posts] == ["https://hooks.example/hook", "https://hooks.example/slack"]
    assert FakeSMTP.sessions == []  # e-mail went out the first time
    [alert] = stored(svc)
    assert (alert.status, alert.sinks, alert.attempts, alert.last_error) == (AlertStatus.DELIVERED, "email,slack,webhook", 2, None)


@pytest.mark.parametrize("status", [300, 404, 500])
def test_a_webhook_status_of_300_or_more_is_a_failure(delivering: Any, status: int) -> None:
    svc = delivering
    svc.http.answers = {"hook": status}
    with pytest.raises(TransientProviderError, match=f"webhook: HTTP {status}"):
        alerts.deliver(svc, raise_refund(svc))


def test_an_smtp_failure_is_named_by_its_class(delivering: Any) -> None:
    svc = delivering
    FakeSMTP.fail = smtplib.SMTPRecipientsRefused({"ops@example.com": (550, b"no such user")})
    with pytest.raises(TransientProviderError) as err:
        alerts.deliver(svc, raise_refund(svc))
    assert err.value.message == "email: SMTPRecipientsRefused"


def test_delivering_an_unknown_alert_does_nothing(delivering: Any) -> None:
    assert alerts.deliver(delivering, 4242) == "nothing to do"
    assert delivering.http.posts == []


def test_giving_up_marks_the_alert_failed_and_logs_it(svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    alert_id = raise_refund(svc)
    alerts.give_up(svc, alert_id)
    assert stored(svc)[0].status == AlertStatus.FAILED
    assert f"alert.undeliverable alert={alert_id}" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_pending_lists_untried_alerts_older_than_the_grace(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from receiver.models import utcnow

    ids = [alerts.raise_alert(svc, "dead_letter", f"k{n}", "t", {}) for n in range(4)]
    old = utcnow() - timedelta(seconds=svc.settings.sweep_grace + 5)
    with svc.engine.begin() as conn:
        conn.execute(Alert.__table__.update().where(Alert.id.in_(ids[:3])).values(created_at=old))
        conn.execute(Alert.__table__.update().where(Alert.id == ids[1]).values(attempts=1))  # tried: its retries own it
        conn.execute(Alert.__table__.update().where(Alert.id == ids[2]).values(status=AlertStatus.DELIVERED))
    assert alerts.pending(svc) == [ids[0]]
    more = [alerts.raise_alert(svc, "dead_letter", f"m{n}", "t", {}) for n in range(3)]
    with svc.engine.begin() as conn:
        conn.execute(Alert.__table__.update().where(Alert.id.in_(more)).values(created_at=old))
    assert alerts.pending(svc, limit=2) == [ids[0], more[0]]


def test_refused_pushes_are_counted_by_a_thread_of_their_own(svc: Any) -> None:
    import threading
    import time as clock

    app = Flask("unit")
    app.extensions["receiver"] = svc
    counter = alerts.RejectionCounter(app)
    before = sum(t.name == "rejections" for t in threading.enumerate())
    for _ in range(5):  # the push_rejections threshold
        counter.note("xport")
    deadline = clock.monotonic() + 5
    while not stored(svc) and clock.monotonic() < deadline:
        clock.sleep(0.01)
    [alert] = stored(svc)
    assert (alert.rule, alert.source, json.loads(alert.detail)) == ("push_rejections", "xport", {"count": 5})
    assert sum(t.name == "rejections" for t in threading.enumerate()) == before + 1  # one thread per process
    assert svc.redis.get(svc.key("rejections", "xport", str(int(T0 // 60)))) == b"5"


def test_pending_at_the_edge_of_the_grace(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 5, 20, 8, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(alerts, "utcnow", lambda: now)
    edge, past = (alerts.raise_alert(svc, "dead_letter", k, "t", {}) for k in ("edge", "past"))
    with svc.engine.begin() as conn:
        conn.execute(Alert.__table__.update().where(Alert.id == edge).values(created_at=now - timedelta(seconds=svc.settings.sweep_grace)))
        conn.execute(Alert.__table__.update().where(Alert.id == past).values(
            created_at=now - timedelta(seconds=svc.settings.sweep_grace, milliseconds=1)))
    assert alerts.pending(svc) == [past]


def test_a_minute_already_over_the_threshold_alerts_no_more_whatever_the_window(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with_alerts(svc, dedupe_window=1)
    minute = int(T0 // 60)
    alerts.note_rejections(svc, "demo", minute, 5)
    at(monkeypatch, T0 + 2)  # another dedupe window, the same minute of pushes
    alerts.note_rejections(svc, "demo", minute, 3)
    assert [json.loads(a.detail) for a in stored(svc)] == [{"count": 5}]


def test_a_detail_with_times_and_decimals_is_stored_as_text(svc: Any) -> None:
    from datetime import datetime, timezone
    from decimal import Decimal

    alerts.raise_alert(svc, "dead_letter", "k", "t", {"at": datetime(2026, 5, 20, 8, 0, tzinfo=timezone.utc), "yuan": Decimal("63.30")})
    assert json.loads(stored(svc)[0].detail) == {"at": "2026-05-20 08:00:00+00:00", "yuan": "63.30"}


def test_a_retry_skips_every_sink_already_reached(delivering: Any) -> None:
    svc = delivering
    svc.http.answers = {"slack": 502}
    alert_id = raise_refund(svc)
    with pytest.raises(TransientProviderError):
        alerts.deliver(svc, alert_id)
    assert stored(svc)[0].sinks == "email,webhook"
    svc.http.answers, svc.http.posts, FakeSMTP.sessions = {}, [], []
    assert alerts.deliver(svc, alert_id) == AlertStatus.DELIVERED
    assert [url for url, *_ in svc.http.posts] == ["https://hooks.example/slack"] and FakeSMTP.sessions == []


class RecordingSMTP(FakeSMTP):
    """Keeps the message as sent."""

    sent: list[Any] = []

    def send_message(self, msg: Any) -> None:
        RecordingSMTP.sent.append(msg)


def test_the_email_body_is_the_payload_as_indented_json_in_its_own_script(delivering: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = delivering
    monkeypatch.setattr(alerts.smtplib, "SMTP", RecordingSMTP)
    RecordingSMTP.sent = []
    alert_id = alerts.raise_alert(svc, "order_closed", "k", "订单 2257164624870311973 已关闭", {"old": "shipped", "new": "closed"})
    alerts.deliver(svc, alert_id)
    [msg] = RecordingSMTP.sent
    body = msg.get_content()
    payload = json.loads(body)
    assert body == json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    assert "订单 2257164624870311973 已关闭" in body


def test_a_count_that_fails_in_the_thread_is_logged_and_the_thread_lives_on(svc: Any, monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    import time as clock

    calls: list[tuple[str, int]] = []

    def flaky(s: Any, source: str, minute: int, refused: int) -> None:
        calls.append((source, refused))
        if source == "thai":
            raise RuntimeError("database is locked")

    monkeypatch.setattr(alerts, "note_rejections", flaky)
    app = Flask("unit")
    app.extensions["receiver"] = svc
    counter = alerts.RejectionCounter(app)
    counter.note("thai")
    deadline = clock.monotonic() + 5
    while "alert.rejections_uncounted source=thai" not in [r.getMessage() for r in caplog.records] and clock.monotonic() < deadline:
        clock.sleep(0.01)
    counter.note("demo")
    while ("demo", 1) not in calls and clock.monotonic() < deadline:
        clock.sleep(0.01)
    assert "alert.rejections_uncounted source=thai" in [r.getMessage() for r in caplog.records]
    assert calls == [("thai", 1), ("demo", 1)]
