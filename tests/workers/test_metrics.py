"""The worker's own metrics port: re-fetch outcomes and latency, counted where the re-fetch ran."""
from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.models import EventStatus
from tests.conftest import wait_for
from tests.workers.test_refetch import ALIBABA, events_when, send


def worker_sample(url: str, name: str, **labels: str) -> float:
    """One sample of the worker's metrics, 0 when it has none yet."""
    text = requests.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def test_refetch_outcomes_and_latency_are_served_by_the_worker(app, client, sandbox, worker, worker_metrics_url):
    provider = sandbox.providers["xportcn"]
    processed = worker_sample(worker_metrics_url, "receiver_refetches_total", source="demo", outcome="processed")
    ok = worker_sample(worker_metrics_url, "receiver_refetch_seconds_count", source="demo", result="ok")
    dead = worker_sample(worker_metrics_url, "receiver_refetches_total", source="demo", outcome="dead")
    permanent = worker_sample(worker_metrics_url, "receiver_refetch_seconds_count", source="demo", result="permanent")

    send(client, provider, ALIBABA, "ORDER_CREATE")
    events_when(app, EventStatus.PROCESSED)
    # The outcome is counted just after the event's status is written: wait for it.
    wait_for(lambda: worker_sample(worker_metrics_url, "receiver_refetches_total", source="demo", outcome="processed") == processed + 1)
    assert worker_sample(worker_metrics_url, "receiver_refetch_seconds_count", source="demo", result="ok") == ok + 1

    sandbox.faults.broken_orders[ALIBABA] = (1001, "order is locked")
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -10))
    events_when(app, EventStatus.PROCESSED, EventStatus.DEAD)
    wait_for(lambda: worker_sample(worker_metrics_url, "receiver_refetches_total", source="demo", outcome="dead") == dead + 1)
    assert worker_sample(worker_metrics_url, "receiver_refetch_seconds_count", source="demo", result="permanent") == permanent + 1


def test_the_worker_metrics_server_listens_on_loopback_only(worker, worker_metrics_url):
    import socket
    from urllib.parse import urlsplit

    port = urlsplit(worker_metrics_url).port
    assert wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200)
    try:  # this machine's address towards the outside (a UDP "connect" sends nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("198.51.100.1", 9))
            outside = probe.getsockname()[0]
    except OSError:
        outside = "127.0.0.1"
    if outside.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{outside}:{port}/metrics", timeout=2)
