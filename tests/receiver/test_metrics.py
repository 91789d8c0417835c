"""GET /metrics: pushes by source, kind and code, ack latency, and the inbox's state read at scrape time."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from receiver.models import EventStatus
from tests.conftest import API_TOKEN
from tests.workers.test_refetch import ALIBABA, send


def scrape(client, **kw) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    """The samples of one /metrics answer, keyed by name and sorted labels."""
    resp = client.get("/metrics", **kw)
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.get_data(as_text=True))
        for s in family.samples
    }


def sample(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_pushes_are_counted_by_source_kind_and_code_with_their_ack_time(client, sandbox):
    provider = sandbox.providers["xportcn"]
    before = scrape(client)
    assert send(client, provider, ALIBABA, provider.step_status(ALIBABA)).status_code == 200
    assert client.post("/callbacks/demo?token=wrong", data=b"{}").status_code == 401
    assert client.post("/callbacks/no-such-source?token=x", data=b"{}").status_code == 404
    after = scrape(client)
    for labels in ({"source": "demo", "kind": "status", "code": "200"},
                   {"source": "demo", "kind": "unknown", "code": "401"},
                   {"source": "unknown", "kind": "unknown", "code": "404"}):
        assert sample(after, "receiver_pushes_total", **labels) == sample(before, "receiver_pushes_total", **labels) + 1
    acks = sample(after, "receiver_push_ack_seconds_count", source="demo") - sample(before, "receiver_push_ack_seconds_count", source="demo")
    assert acks == 2
    assert not [key for key in after if key[0] == "receiver_pushes_total" and ("source", "no-such-source") in key[1]]


def test_inbox_state_is_read_when_scraped(make_app, stored_event):
    for status in (EventStatus.DEAD, EventStatus.DEAD, EventStatus.PROCESSED):
        stored_event("daji", status)
    own_queue = make_app(namespace="receiver-metrics-test")
    svc = own_queue.extensions["receiver"]
    svc.redis.delete("receiver-metrics-test")
    svc.redis.rpush("receiver-metrics-test", "a", "b", "c")
    try:
        samples = scrape(own_queue.test_client())
    finally:
        svc.redis.delete("receiver-metrics-test")
    assert sample(samples, "receiver_events", source="daji", status="dead") == 2
    assert sample(samples, "receiver_events", source="daji", status="processed") == 1
    assert ("receiver_events", (("source", "demo"), ("status", "failed"))) in samples  # zero, but present
    assert sample(samples, "receiver_dead_letters", source="daji") == 2
    assert sample(samples, "receiver_queue_depth") == 3
    assert sample(samples, "receiver_dependency_up", dependency="database") == 1


def test_a_scrape_still_answers_when_redis_is_down(make_app):
    samples = scrape(make_app(broker_url="redis://127.0.0.1:1/0").test_client())
    assert sample(samples, "receiver_dependency_up", dependency="redis") == 0
    assert sample(samples, "receiver_dependency_up", dependency="database") == 1
    assert ("receiver_queue_depth", ()) not in samples


def test_metrics_are_open_unless_configured_to_need_the_token(client, make_app):
    assert client.get("/metrics").status_code == 200
    guarded = make_app(metrics_require_token=True).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    scrape(guarded, headers={"Authorization": f"Bearer {API_TOKEN}"})
