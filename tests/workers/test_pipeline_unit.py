"""The worker's pipeline as plain functions: failures sorted into retry-later and dead, claims,
backoff bounds, event statuses and reconciliation, on a SQLite file with a FakeRedis and a fake
provider (no Redis, no Celery worker, no HTTP)."""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from receiver import inbox
from receiver.errors import PermanentProviderError, TransientProviderError
from receiver.models import Alert, Event, EventStatus, Order, utcnow
from receiver.providers import LineSnapshot, OrderRef, OrderSnapshot, family_for
from workers import pipeline
from workers.pipeline import Outcome, Wanted

pytestmark = pytest.mark.unit

ORDER = "2542285634920880794"
WANTED = Wanted("demo", OrderRef("1688", ORDER, {"tbOrderId": ORDER}))
NOW = 1_779_264_000.0
LINE = LineSnapshot("2542285634920880794", "736985424157", "5739035294244", "工装短裤", 3, 7533, 22599, 0, "waitbuyerpay")
SNAP = OrderSnapshot(
    platform="1688", provider_order_id=ORDER, order_no="1232742280398373686", purchase_id=None,
    status="awaiting_payment", raw_status="waitbuyerpay", product_amount=22599, shipping_fee=745, discount=0,
    total_amount=23344, refund_amount=0, currency="CNY", modified_at=None, lines=(LINE,),
)


@pytest.fixture
def svc(unit_services: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """unit_services with the suite's retry settings and the pipeline's clock stopped at NOW."""
    unit_services.settings = dataclasses.replace(
        unit_services.settings, max_retries=3, retry_backoff=2.0, retry_backoff_max=60.0, coalesce_window=1.5)
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(time=lambda: NOW))
    return unit_services


def envelope(message_type: str = "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", body: Any = None, platform: int = 1) -> bytes:
    body = {"orderId": ORDER, "orderNo": "1232742280398373686"} if body is None else body
    return json.dumps({"messageType": message_type, "messageBody": body, "messagePlatform": platform, "timestamp": "1779263269913"}).encode()


_serial = iter(range(1, 10**6))


def add_event(svc: Any, status: str = EventStatus.RECEIVED, order_id: str | None = ORDER, source: str = "demo",
              body: bytes | None = None, attempts: int = 0, updated_at: datetime | None = None) -> int:
    n = next(_serial)
    event = Event(source=source, message_type="ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", kind="price", platform="1688",
                  order_id=order_id, dedupe_key=f"dedupe-{n}", content_type="application/json",
                  headers="{}", body=body or envelope(), status=status, attempts=attempts,
                  received_at=updated_at or utcnow(), updated_at=updated_at or utcnow())
    with svc.Session.begin() as session:
        session.add(event)
        session.flush()
        return event.id


def statuses(svc: Any) -> dict[int, tuple[str, int, str | None]]:
    with svc.Session() as session:
        return {e.id: (e.status, e.attempts, e.last_error) for e in session.scalars(select(Event).order_by(Event.id))}


def dead_letters(svc: Any) -> list[Alert]:
    with svc.Session() as session:
        return list(session.scalars(select(Alert).where(Alert.rule == "dead_letter")))


def refetch_raising(monkeypatch: pytest.MonkeyPatch, error: Exception | None) -> list[tuple[Any, ...]]:
    """Make refetch_order raise `error` (or succeed); return the calls it got."""
    calls: list[tuple[Any, ...]] = []

    def fake(svc: Any, source: Any, ref: OrderRef, cause: str) -> list[Any]:
        calls.append((source.name, ref, cause))
        if error is not None:
            raise error
        return []

    monkeypatch.setattr(pipeline, "refetch_order", fake)
    return calls


# --- handle_refetch: transient failures are retried, permanent ones are dead at once --------------
@pytest.mark.parametrize(
    "error",
    [TransientProviderError("HTTP 503 from https://api.example/alibaba/order/detail"),
     OperationalError("SELECT", {}, Exception("database is locked")), RedisConnectionError("Redis went away")],
    ids=["provider 5xx", "database blink", "redis blink"],
)
def test_a_transient_failure_is_retried_later(svc: Any, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    first, second = add_event(svc), add_event(svc)
    other = add_event(svc, order_id="3305075341149134260")
    refetch_raising(monkeypatch, error)
    outcome = pipeline.handle_refetch(svc, WANTED, 1)
    assert outcome.status == EventStatus.FAILED and outcome.retry_in is not None and 2.0 <= outcome.retry_in <= 4.0
    got = statuses(svc)
    assert got[first] == got[second] == (EventStatus.FAILED, 1, str(error))
    assert got[other] == (EventStatus.RECEIVED, 0, None)
    assert dead_letters(svc) == []


@pytest.mark.parametrize(
    "error",
    [PermanentProviderError("HTTP 404 from https://api.example/alibaba/order/detail: not found"),
     PermanentProviderError("provider code 1001: 订单不存在")],
    ids=["HTTP 404", "answer code"],
)
def test_a_permanent_failure_is_dead_at_once_and_alerted(svc: Any, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    first, second = add_event(svc), add_event(svc)
    refetch_raising(monkeypatch, error)
    assert pipeline.handle_refetch(svc, WANTED, 0) == Outcome(EventStatus.DEAD)
    got = statuses(svc)
    assert got[first] == got[second] == (EventStatus.DEAD, 1, str(error))
    [alert] = dead_letters(svc)
    assert alert.title == f"Dead letter: 2 event(s) of demo order {ORDER} failed for good: {error}"
    assert (alert.source, alert.order_id) == ("demo", ORDER)
    assert json.loads(alert.detail) == {"events": [first, second], "error": str(error)}


def test_an_unexpected_error_is_dead_and_names_its_class(svc: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    event = add_event(svc)
    refetch_raising(monkeypatch, ValueError("quantity 2147483648 does not fit"))
    assert pipeline.handle_refetch(svc, WANTED, 0) == Outcome(EventStatus.DEAD)
    assert statuses(svc)[event] == (EventStatus.DEAD, 1, "ValueError: quantity 2147483648 does not fit")
    assert f"refetch.unexpected source=demo order={ORDER}" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


def test_the_last_transient_failure_kills_only_the_events_that_had_every_attempt(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    veteran = add_event(svc, status=EventStatus.FAILED, attempts=3)  # 3 attempts so far, max_retries 3: this is its 4th
    newcomer = add_event(svc)
    refetch_raising(monkeypatch, TransientProviderError("HTTP 502"))
    assert pipeline.handle_refetch(svc, WANTED, 3) == Outcome(EventStatus.DEAD)
    got = statuses(svc)
    assert got[veteran] == (EventStatus.DEAD, 4, "gave up after 4 attempts: HTTP 502")
    assert got[newcomer] == (EventStatus.FAILED, 1, "HTTP 502")
    [alert] = dead_letters(svc)
    assert json.loads(alert.detail)["events"] == [veteran]


def test_a_transient_failure_before_the_last_attempt_is_retried(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    event = add_event(svc, status=EventStatus.FAILED, attempts=2)
    refetch_raising(monkeypatch, TransientProviderError("HTTP 502"))
    outcome = pipeline.handle_refetch(svc, WANTED, 2)
    assert outcome.status == EventStatus.FAILED and outcome.retry_in is not None
    assert statuses(svc)[event] == (EventStatus.FAILED, 3, "HTTP 502")


def test_a_successful_refetch_processes_every_waiting_event_of_the_order(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = [add_event(svc), add_event(svc, status=EventStatus.QUEUED), add_event(svc, status=EventStatus.FAILED)]
    done = add_event(svc, status=EventStatus.DEAD)
    calls = refetch_raising(monkeypatch, None)
    assert pipeline.handle_refetch(svc, WANTED, 0) == Outcome(EventStatus.PROCESSED)
    assert calls == [("demo", WANTED.ref, f"event:{waiting[-1]}")]
    got = statuses(svc)
    assert [got[i][0] for i in waiting] == [EventStatus.PROCESSED] * 3
    assert got[done] == (EventStatus.DEAD, 0, None)
    with svc.Session() as session:
        assert all(session.get(Event, i).processed_at is not None for i in waiting)


def test_a_refetch_with_no_event_waiting_says_so_as_its_cause(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = refetch_raising(monkeypatch, None)
    assert pipeline.handle_refetch(svc, WANTED, 0) == Outcome(EventStatus.PROCESSED)
    assert calls[0][2] == "refetch"


def test_a_refetch_for_a_source_no_longer_configured_is_dead(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    event = add_event(svc, source="gone")
    calls = refetch_raising(monkeypatch, None)
    assert pipeline.handle_refetch(svc, Wanted("gone", WANTED.ref), 0) == Outcome(EventStatus.DEAD)
    assert calls == [] and statuses(svc)[event] == (EventStatus.DEAD, 0, "source 'gone' is no longer configured")


def test_handling_a_refetch_releases_the_claim_and_notes_the_start(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    refetch_raising(monkeypatch, None)
    assert pipeline.claim_refetch(svc, WANTED) == 0.0
    pipeline.handle_refetch(svc, WANTED, 0)
    assert svc.redis.get(f"unit:pending:demo:{ORDER}") is None
    assert svc.redis.get(f"unit:last:demo:{ORDER}") == str(NOW).encode()
    assert svc.redis.expiry[f"unit:last:demo:{ORDER}"] == 2  # int(1.5) + 1


# --- claims ------------------------------------------------------------------------------------
def test_a_claim_is_taken_once(svc: Any) -> None:
    assert pipeline.claim_refetch(svc, WANTED) == 0.0
    assert pipeline.claim_refetch(svc, WANTED) is None
    assert svc.redis.expiry[f"unit:pending:demo:{ORDER}"] == pipeline.CLAIM_TTL == 60
    assert pipeline.claim_refetch(svc, Wanted("demo", OrderRef("1688", "3305075341149134260"))) == 0.0


@pytest.mark.parametrize(("ago", "countdown"), [(0.0, 1.5), (0.5, 1.0), (1.5, 0.0), (30.0, 0.0)])
def test_a_claim_after_a_recent_refetch_waits_out_the_coalescing_window(svc: Any, ago: float, countdown: float) -> None:
    svc.redis.set(f"unit:last:demo:{ORDER}", NOW - ago)
    assert pipeline.claim_refetch(svc, WANTED) == pytest.approx(countdown)


# --- backoff -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("retries", "ceiling"), [(0, 2.0), (1, 4.0), (3, 16.0), (4, 32.0), (5, 60.0), (30, 60.0)])
def test_backoff_is_exponential_with_equal_jitter_and_capped(svc: Any, monkeypatch: pytest.MonkeyPatch, retries: int, ceiling: float) -> None:
    for pick, expected in (("low", ceiling / 2), ("high", ceiling)):
        monkeypatch.setattr(pipeline, "random", SimpleNamespace(uniform=lambda a, b, pick=pick: a if pick == "low" else b))
        assert pipeline.backoff(svc, retries) == pytest.approx(expected)


def test_backoff_draws_within_its_bounds(svc: Any) -> None:
    draws = [pipeline.backoff(svc, 2) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in draws) and len(set(draws)) > 100


# --- read_event --------------------------------------------------------------------------------
def test_an_event_that_names_an_order_wants_it_refetched(svc: Any) -> None:
    event = add_event(svc)
    assert pipeline.read_event(svc, event) == Wanted("demo", OrderRef("1688", ORDER, {"tbOrderId": ORDER, "orderNo": "1232742280398373686"}))


def test_a_missing_event_is_missing(svc: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert pipeline.read_event(svc, 4242) == "missing"
    assert "event.missing event=4242" in [r.getMessage() for r in caplog.records]  # the whole line, as logged


@pytest.mark.parametrize("status", [EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.DEAD])
def test_an_event_already_done_is_left_as_it_is(svc: Any, status: str) -> None:
    event = add_event(svc, status=status)
    assert pipeline.read_event(svc, event) == status
    assert statuses(svc)[event][0] == status


def test_an_event_of_a_source_no_longer_configured_is_dead(svc: Any) -> None:
    event = add_event(svc, source="gone")
    assert pipeline.read_event(svc, event) == EventStatus.DEAD
    assert statuses(svc)[event] == (EventStatus.DEAD, 0, "source 'gone' is no longer configured")
    [alert] = dead_letters(svc)
    assert alert.title == f"Dead letter: 1 event(s) of event {event} failed for good: source 'gone' is no longer configured"
    assert (alert.source, alert.order_id) == (None, None)


def test_a_stored_push_that_no_longer_parses_is_dead(svc: Any) -> None:
    event = add_event(svc, body=b'{"messageType": "ORDER_CREATE"}')
    assert pipeline.read_event(svc, event) == EventStatus.DEAD
    assert statuses(svc)[event][2].startswith("stored push does not parse: ")


def test_a_push_naming_no_order_is_ignored_with_its_reason(svc: Any) -> None:
    event = add_event(svc, body=envelope("ORDER_CREATE", {"id": "1232742280964604571"}))
    assert pipeline.read_event(svc, event) == EventStatus.IGNORED
    with svc.Session() as session:
        assert session.get(Event, event).ignored_reason == "the summary body names no order id"


def test_a_taobao_message_of_dajisaas_is_ignored(svc: Any) -> None:
    from urllib.parse import urlencode

    message = json.dumps({"seller_id": "2219093763101", "message_type": 3, "timestamp": 1779263269,
                          "data": {"purchase_id": "200058578338", "status": 11}})
    event = add_event(svc, source="daji", body=urlencode({"message": message, "_dj_signature": "x"}).encode())
    with svc.engine.begin() as conn:
        conn.execute(update(Event).where(Event.id == event).values(content_type="application/x-www-form-urlencoded"))
    assert pipeline.read_event(svc, event) == EventStatus.IGNORED
    with svc.Session() as session:
        assert session.get(Event, event).ignored_reason == "Taobao/Tmall message: DajiSaaS documents no Taobao order query"


# --- statuses ----------------------------------------------------------------------------------
def test_a_final_status_is_never_undone(svc: Any) -> None:
    done = {s: add_event(svc, status=s) for s in (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.DEAD)}
    waiting = {s: add_event(svc, status=s) for s in (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED)}
    assert inbox.set_status(svc.engine, [*done.values(), *waiting.values()], EventStatus.FAILED, "HTTP 502") == 3
    got = statuses(svc)
    assert {s: got[i][0] for s, i in done.items()} == {s: s for s in done}
    assert {got[i] for i in waiting.values()} == {(EventStatus.FAILED, 0, "HTTP 502")}


def test_an_ignored_reason_is_cut_to_its_column(svc: Any) -> None:
    event = add_event(svc)
    inbox.set_status(svc.engine, [event], EventStatus.IGNORED, None, ignored="r" * 300)
    with svc.Session() as session:
        assert session.get(Event, event).ignored_reason == "r" * 255


def test_stuck_events_are_the_untaken_and_the_failed_whose_retry_never_came(svc: Any) -> None:
    now = utcnow()
    grace = svc.settings.sweep_grace  # 60 s; a lost retry: 60 + 60 (retry_backoff_max)
    received_old = add_event(svc, updated_at=now - timedelta(seconds=grace + 5))
    queued_old = add_event(svc, status=EventStatus.QUEUED, updated_at=now - timedelta(seconds=grace + 5))
    add_event(svc, updated_at=now - timedelta(seconds=grace - 5))
    add_event(svc, status=EventStatus.FAILED, updated_at=now - timedelta(seconds=grace + 30))
    failed_old = add_event(svc, status=EventStatus.FAILED, updated_at=now - timedelta(seconds=grace + 65))
    add_event(svc, status=EventStatus.DEAD, updated_at=now - timedelta(days=1))
    assert pipeline.stuck_events(svc) == [received_old, queued_old, failed_old]


def test_reopen_puts_dead_failed_and_processed_events_back(svc: Any) -> None:
    events = {s: add_event(svc, status=s) for s in EventStatus}
    with svc.engine.begin() as conn:
        conn.execute(update(Event).values(last_error="HTTP 502"))
    reopened = inbox.reopen(svc.engine, list(events.values()))
    assert reopened == sorted(i for s, i in events.items() if s != EventStatus.IGNORED)
    got = statuses(svc)
    assert got[events[EventStatus.DEAD]] == (EventStatus.RECEIVED, 0, None)
    assert got[events[EventStatus.IGNORED]] == (EventStatus.IGNORED, 0, "HTTP 502")
    assert inbox.reopen(svc.engine, []) == []


def test_select_for_replay_filters_by_status_source_and_time(svc: Any) -> None:
    now = utcnow()
    a = add_event(svc, status=EventStatus.DEAD, updated_at=now - timedelta(hours=2))
    b = add_event(svc, status=EventStatus.DEAD, source="thai")
    c = add_event(svc, status=EventStatus.DEAD)
    add_event(svc, status=EventStatus.FAILED)
    assert inbox.select_for_replay(svc.engine, EventStatus.DEAD, None, None) == [a, b, c]
    assert inbox.select_for_replay(svc.engine, EventStatus.DEAD, "demo", None) == [a, c]
    assert inbox.select_for_replay(svc.engine, EventStatus.DEAD, None, now - timedelta(hours=1)) == [b, c]


def test_exhausted_counts_attempts_over_the_retries(svc: Any) -> None:
    tried = [add_event(svc, attempts=n) for n in (2, 3, 4, 9)]
    assert inbox.exhausted(svc.engine, tried, svc.settings.max_retries) == tried[2:]


# --- refetch_order and reconcile, with a fake provider -------------------------------------------
class FakeLimited:
    """Stands in for LimitedHttp: no rate limiting, a fixed start time."""

    def __init__(self, started: datetime | None) -> None:
        self.started, self.resets = started, 0

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The xportcn family answering with `provider.snaps` (per call: a list of snapshots, or an error)."""
    state = SimpleNamespace(snaps=[[SNAP]], pages=[], asked=[], started=datetime(2026, 5, 20, 8, 0, tzinfo=timezone.utc))
    family = family_for("xportcn")

    def fetch(http: Any, source: Any, ref: OrderRef) -> list[OrderSnapshot]:
        state.asked.append(ref)
        answer = state.snaps.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def list_orders(http: Any, source: Any, since: datetime, until: datetime) -> Iterator[list[OrderSnapshot]]:
        state.asked.append((since, until))
        yield from state.pages

    monkeypatch.setattr(family, "fetch_orders", fetch)
    monkeypatch.setattr(family, "list_orders", list_orders)
    monkeypatch.setattr(pipeline, "limited_http", lambda svc, source: FakeLimited(state.started))
    return state


def held(svc: Any) -> list[Order]:
    with svc.Session() as session:
        return list(session.scalars(select(Order)))


def test_refetch_order_applies_the_providers_truth_and_reports_changes(svc: Any, provider: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "workers.pipeline")
    source = svc.settings.sources["demo"]
    first = pipeline.refetch_order(svc, source, WANTED.ref, "event:7")
    assert [c.field for c in first][:3] == ["order_no", "status", "raw_status"]
    provider.snaps = [[dataclasses.replace(SNAP, discount=155, total_amount=23189)]]
    provider.started += timedelta(seconds=5)
    changes = pipeline.refetch_order(svc, source, WANTED.ref, "event:8")
    assert [(c.field, c.old, c.new) for c in changes] == [("discount", 0, 155), ("total_amount", 23344, 23189)]
    [order] = held(svc)
    assert (order.total_amount, order.version, order.fetched_at) == (23189, 2, provider.started)
    assert f"order.changed source=demo order={ORDER} fields=discount,total_amount cause=event:8" in [r.getMessage() for r in caplog.records]  # the whole line, as logged
    with svc.Session() as session:
        [alert] = session.scalars(select(Alert))
    assert alert.rule == "price_corrected"


@pytest.mark.parametrize("path", ["refetch", "reconcile"])
def test_a_lost_insert_race_is_transient_on_both_paths_to_our_state(svc: Any, provider: Any, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    def race(*args: Any) -> Any:
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(pipeline, "apply_snapshot", race)
    source = svc.settings.sources["demo"]
    provider.pages = [[SNAP]]
    with pytest.raises(TransientProviderError, match=f"could not apply order {ORDER}: IntegrityError"):
        if path == "refetch":
            pipeline.refetch_order(svc, source, WANTED.ref, "event:7")
        else:
            pipeline.reconcile(svc, source, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc))


def test_refetch_order_lets_provider_errors_through(svc: Any, provider: Any) -> None:
    provider.snaps = [PermanentProviderError("order not found")]
    with pytest.raises(PermanentProviderError):
        pipeline.refetch_order(svc, svc.settings.sources["demo"], WANTED.ref, "event:7")
    assert held(svc) == []


def test_reconcile_applies_every_page_and_counts(svc: Any, provider: Any) -> None:
    other = dataclasses.replace(SNAP, provider_order_id="3305075341149134260", total_amount=6330, lines=())
    pipeline.refetch_order(svc, svc.settings.sources["demo"], WANTED.ref, "event:1")  # we hold SNAP already
    provider.pages = [[SNAP, other], [dataclasses.replace(SNAP, status="shipped", raw_status="waitbuyerreceive")]]
    provider.started += timedelta(seconds=5)
    seen: list[tuple[int, int, int]] = []
    since, until = datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc)
    report = pipeline.reconcile(svc, svc.settings.sources["demo"], since, until, lambda r: seen.append((r.pages, r.orders, r.changed)))
    assert (report.pages, report.orders, report.changed) == (2, 3, 2)
    assert seen == [(1, 2, 1), (2, 3, 2)]
    assert provider.asked[-1] == (since, until)
    assert sorted((o.provider_order_id, o.status) for o in held(svc)) == [("2542285634920880794", "shipped"), ("3305075341149134260", "awaiting_payment")]


def test_stale_open_orders_skips_final_recent_and_recently_tried_ones(svc: Any, provider: Any) -> None:
    source = svc.settings.sources["demo"]
    snaps = {n: dataclasses.replace(SNAP, provider_order_id=str(n), status=s, lines=())
             for n, s in ((1, "shipped"), (2, "completed"), (3, "awaiting_payment"), (4, "closed"), (5, "awaiting_shipment"), (6, "shipped"))}
    old = utcnow() - timedelta(seconds=svc.settings.refresh_open_after + 60)
    for n, snap in snaps.items():
        provider.snaps, provider.started = [[snap]], old + timedelta(seconds=n)
        pipeline.refetch_order(svc, source, OrderRef("1688", str(n)), "refetch")
    with svc.engine.begin() as conn:  # 6 was re-fetched just now
        conn.execute(update(Order).where(Order.provider_order_id == "6").values(fetched_at=utcnow()))
    pipeline.note_refresh(svc, "demo", "3")
    assert svc.redis.expiry["unit:refreshed:demo:3"] == int(svc.settings.refresh_open_after)
    assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", 10)] == ["1", "5"]
    assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", 1)] == ["1"]
    assert pipeline.stale_open_orders(svc, "thai", 10) == []


def test_limited_http_takes_a_token_of_the_sources_bucket_per_call(svc: Any) -> None:
    source = dataclasses.replace(svc.settings.sources["demo"], rate_limit=2.5, rate_burst=4)
    calls: list[str] = []
    svc.__dict__["http"] = SimpleNamespace(post=lambda url, **kw: calls.append(url) or "answer", get=lambda url, **kw: calls.append(url))
    http = pipeline.limited_http(svc, source)
    assert http.post("https://api.example/alibaba/order/page", json={}) == "answer"
    http.get("https://api.example/open/order/refund/query")
    assert calls == ["https://api.example/alibaba/order/page", "https://api.example/open/order/refund/query"]
    assert svc.redis.scripts_run == [(["unit:ratelimit:demo"], [2.5, 4])] * 2
    assert http.started is not None


def test_only_the_events_asked_for_are_exhausted_or_reopened(svc: Any) -> None:
    asked, other = add_event(svc, status=EventStatus.DEAD, attempts=5), add_event(svc, status=EventStatus.DEAD, attempts=5)
    assert inbox.exhausted(svc.engine, [asked], svc.settings.max_retries) == [asked]
    old = utcnow() - timedelta(hours=1)
    with svc.engine.begin() as conn:
        conn.execute(update(Event).values(updated_at=old))
    assert inbox.reopen(svc.engine, [asked]) == [asked]
    with svc.Session() as session:
        reopened, left = session.get(Event, asked), session.get(Event, other)
        assert (reopened.status, left.status) == (EventStatus.RECEIVED, EventStatus.DEAD)
        assert reopened.updated_at > old and left.updated_at == old  # the sweeper counts its grace from the replay


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The pipeline's and the inbox's utcnow, stopped."""
    now = datetime(2026, 5, 20, 8, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(pipeline, "utcnow", lambda: now)
    monkeypatch.setattr(inbox, "utcnow", lambda: now)
    return now


def test_stuck_events_at_the_edges_of_their_grace(svc: Any, frozen_now: datetime) -> None:
    grace, lost = timedelta(seconds=60), timedelta(seconds=120)
    add_event(svc, updated_at=frozen_now - grace)  # exactly at the edge: not yet stuck
    received_past = add_event(svc, updated_at=frozen_now - grace - timedelta(milliseconds=1))
    add_event(svc, status=EventStatus.FAILED, updated_at=frozen_now - lost)
    failed_past = add_event(svc, status=EventStatus.FAILED, updated_at=frozen_now - lost - timedelta(milliseconds=1))
    assert pipeline.stuck_events(svc) == [received_past, failed_past]


def test_stuck_events_come_a_thousand_at_a_time(svc: Any, frozen_now: datetime) -> None:
    old = frozen_now - timedelta(hours=1)
    rows = [dict(source="demo", message_type="T", kind="price", platform="1688", order_id=ORDER, dedupe_key=f"bulk-{n}",
                 content_type="application/json", headers="{}", body=b"{}", status=EventStatus.RECEIVED, attempts=0, received_at=old,
                 updated_at=old) for n in range(1001)]
    with svc.engine.begin() as conn:
        conn.execute(Event.__table__.insert(), rows)
    stuck = pipeline.stuck_events(svc)
    assert len(stuck) == 1000 and stuck == sorted(stuck)


def test_select_for_replay_includes_the_first_moment(svc: Any) -> None:
    at = datetime(2026, 5, 20, 8, 0, tzinfo=timezone.utc)
    on_time = add_event(svc, status=EventStatus.DEAD, updated_at=at)
    add_event(svc, status=EventStatus.DEAD, updated_at=at - timedelta(milliseconds=1))
    assert inbox.select_for_replay(svc.engine, EventStatus.DEAD, "demo", at) == [on_time]


def test_stale_open_orders_at_the_edge_and_past_tried_ones(svc: Any, provider: Any, frozen_now: datetime) -> None:
    source = svc.settings.sources["demo"]
    older = frozen_now - timedelta(seconds=svc.settings.refresh_open_after)
    for n in range(1, 7):
        provider.snaps, provider.started = [[dataclasses.replace(SNAP, provider_order_id=str(n), lines=())]], older - timedelta(seconds=7 - n)
        pipeline.refetch_order(svc, source, OrderRef("1688", str(n)), "refetch")
    with svc.engine.begin() as conn:
        conn.execute(update(Order).where(Order.provider_order_id == "6").values(fetched_at=older))  # exactly at the edge: not yet
    for n in range(1, 5):
        pipeline.note_refresh(svc, "demo", str(n))
    assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", 1)] == []  # 4 candidates, all tried
    assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", 2)] == ["5"]


def test_reconcile_applies_with_the_fetch_start_and_says_what_it_repaired(svc: Any, provider: Any, caplog: pytest.LogCaptureFixture,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, "workers.pipeline")
    source = svc.settings.sources["demo"]
    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "limited_http", lambda s, src: seen.append((s, src)) or FakeLimited(provider.started))
    family = family_for("xportcn")
    listed: list[Any] = []
    original = family.list_orders
    monkeypatch.setattr(family, "list_orders", lambda http, src, since, until: listed.append((http, src)) or original(http, src, since, until))
    provider.pages = [[dataclasses.replace(SNAP, currency="CNY")]]
    pipeline.refetch_order(svc, source, WANTED.ref, "event:1")
    provider.pages = [[dataclasses.replace(SNAP, total_amount=22000)]]
    provider.started += timedelta(seconds=3)
    pipeline.reconcile(svc, source, datetime(2026, 5, 19, tzinfo=timezone.utc), datetime(2026, 5, 20, tzinfo=timezone.utc))
    assert seen[-1] == (svc, source) and isinstance(listed[0][0], FakeLimited) and listed[0][1] is source
    [order] = held(svc)
    assert order.fetched_at == provider.started
    with svc.Session() as session:
        causes = {c.field: c.cause for c in session.get(Order, order.id).changes}
        [alert] = session.scalars(select(Alert))
    assert causes["total_amount"] == "reconcile"
    assert (alert.source, alert.order_id, json.loads(alert.detail)["currency"]) == ("demo", ORDER, "CNY")
    assert "reconcile.repaired source=demo orders=1 changed=1" in [r.getMessage() for r in caplog.records]


def test_a_refetch_covers_only_its_sources_events_and_stamps_the_attempt(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    old = utcnow() - timedelta(minutes=5)
    mine, theirs = add_event(svc, updated_at=old), add_event(svc, source="thai", updated_at=old)  # one order id, two sources
    refetch_raising(monkeypatch, TransientProviderError("HTTP 502"))
    pipeline.handle_refetch(svc, WANTED, 0)
    with svc.Session() as session:
        a, b = session.get(Event, mine), session.get(Event, theirs)
        assert (a.status, a.attempts, b.status, b.attempts) == (EventStatus.FAILED, 1, EventStatus.RECEIVED, 0)
        assert a.updated_at > old and b.updated_at == old


def test_a_dead_letter_alert_is_one_per_order_and_window(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    add_event(svc)
    refetch_raising(monkeypatch, PermanentProviderError("order not found"))
    pipeline.handle_refetch(svc, WANTED, 0)
    [alert] = dead_letters(svc)
    assert alert.dedupe_key.startswith(f"dead_letter:demo order {ORDER}:")


def test_an_attempt_is_stamped_for_the_sweeper(svc: Any) -> None:
    old = utcnow() - timedelta(minutes=5)
    event = add_event(svc, updated_at=old)
    inbox.count_attempt(svc.engine, [event])
    with svc.Session() as session:
        got = session.get(Event, event)
        assert (got.attempts, got.updated_at > old) == (1, True)


def test_a_dead_letter_title_is_cut_to_500_characters(svc: Any) -> None:
    event = add_event(svc)
    pipeline.dead_letter(svc, [event], "x" * 600, WANTED)
    [alert] = dead_letters(svc)
    assert alert.title == f"Dead letter: 1 event(s) of demo order {ORDER} failed for good: {'x' * 600}"[:500]


def test_stale_open_orders_come_oldest_first(svc: Any, provider: Any) -> None:
    source = svc.settings.sources["demo"]
    old = utcnow() - timedelta(seconds=svc.settings.refresh_open_after + 600)
    for n, age in ((1, 10), (2, 300), (3, 60)):
        provider.snaps, provider.started = [[dataclasses.replace(SNAP, provider_order_id=str(n), lines=())]], old - timedelta(seconds=age)
        pipeline.refetch_order(svc, source, OrderRef("1688", str(n)), "refetch")
    assert [o.provider_order_id for o in pipeline.stale_open_orders(svc, "demo", 10)] == ["2", "3", "1"]
