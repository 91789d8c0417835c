"""Prometheus metrics: what happened, counted in each process, and the inbox's state, read at scrape time.

Counters and histograms live in the process that did the work. Gunicorn's workers are separate
processes, so with PROMETHEUS_MULTIPROC_DIR set (deploy/gunicorn.conf.py sets it) each writes its
counts to files there and /metrics sums them. A Celery worker serves its own counters on
RECEIVER_WORKER_METRICS_PORT. The inbox's state (events by status, dead letters, queue depth) is
not an event but a fact in the database and Redis: it is read when scraped, by `InboxCollector`.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from receiver import stats
from receiver.auth import check_bearer
from receiver.errors import ProviderError, ReceiverError, TransientProviderError
from receiver.inbox import current_counts, current_status_counts
from receiver.models import EventStatus
from receiver.services import Services, services

if TYPE_CHECKING:
    from receiver.config import Settings

log = logging.getLogger("receiver.metrics")
bp = Blueprint("metrics", __name__)
F = TypeVar("F", bound=Callable[..., Any])

PUSHES = Counter("receiver_pushes", "Pushes answered, by source, kind and HTTP status code.", ["source", "kind", "code"])
ACK_SECONDS = Histogram(
    "receiver_push_ack_seconds",
    "Time from a push's arrival to our answer (providers wait 1 s).",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5),
)
REFETCH_SECONDS = Histogram(
    "receiver_refetch_seconds",
    "Time to re-fetch and apply one order (rate-limit wait included), by source and result.",
    ["source", "result"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REFETCHES = Counter(
    "receiver_refetches",
    "Re-fetch attempts by source and outcome (processed, failed = retry later, dead).",
    ["source", "outcome"],
)
UNKNOWN = "unknown"


# --- the web side: pushes --------------------------------------------------------------------------
def observe_callbacks(callbacks: Blueprint) -> None:
    """Count and time every answer the callbacks blueprint gives, refusals included."""
    callbacks.before_request(_start_clock)
    callbacks.after_request(_count_push)


def _start_clock() -> None:
    g.metrics_started = time.perf_counter()


def _count_push(response: Response) -> Response:
    name = (request.view_args or {}).get("source")
    # Only configured names become labels: the path is the sender's to choose.
    source = name if name in services().settings.sources else UNKNOWN
    PUSHES.labels(source, g.get("push_kind", UNKNOWN), str(response.status_code)).inc()
    outcome = stats.push_outcome(response.status_code)
    fields = [f"push:{source}:{outcome}"]
    if "metrics_started" in g:
        took = time.perf_counter() - g.metrics_started
        ACK_SECONDS.labels(source).observe(took)
        if outcome == "accepted":  # the latency providers wait for; refusals are quick and would hide it
            fields.append(f"ack:{stats.ack_bucket(took)}")
    stats.note(fields)
    return response


# --- the worker side: re-fetches -------------------------------------------------------------------
def timed_refetch(fn: F) -> F:
    """Time a `refetch_order(svc, source, ...)` call and label it ok, transient, permanent or error."""

    @functools.wraps(fn)
    def wrapper(svc: Services, source: Any, *args: Any, **kwargs: Any) -> Any:
        started, result = time.perf_counter(), "ok"
        try:
            return fn(svc, source, *args, **kwargs)
        except TransientProviderError:
            result = "transient"
            raise
        except ProviderError:
            result = "permanent"
            raise
        except Exception:
            result = "error"
            raise
        finally:
            REFETCH_SECONDS.labels(source.name, result).observe(time.perf_counter() - started)

    return wrapper  # type: ignore[return-value]


def counted_refetch(fn: F) -> F:
    """Count what a `handle_refetch(svc, wanted, ...)` attempt ended in."""

    @functools.wraps(fn)
    def wrapper(svc: Services, wanted: Any, *args: Any, **kwargs: Any) -> Any:
        outcome = fn(svc, wanted, *args, **kwargs)
        REFETCHES.labels(wanted.source, outcome.status).inc()
        stats.note([f"refetch:{wanted.source}:{outcome.status}"])
        return outcome

    return wrapper  # type: ignore[return-value]


def serve_worker_metrics(settings: Settings) -> None:
    """In a Celery worker's main process: serve its counters on RECEIVER_WORKER_METRICS_PORT, when set."""
    if not settings.worker_metrics_port:
        return
    registry: Any = REGISTRY
    if settings.metrics_multiproc_dir:
        # The prefork pool's children count in files; stale ones from a previous run would be summed too.
        empty_multiproc_dir(settings.metrics_multiproc_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry)
    except OSError as err:
        # Metrics are not worth a worker that does not start.
        log.error("metrics.port_unavailable port=%s error=%s", settings.worker_metrics_port, err)
        return
    log.info("metrics.serving host=%s port=%s", settings.worker_metrics_host, settings.worker_metrics_port)


def empty_multiproc_dir(path: str) -> None:
    """Create the multiprocess directory, or remove the counts a previous run left in it."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


# --- state, read at scrape time ---------------------------------------------------------------------
class InboxCollector:
    """Events by source and status, dead letters and queue depth, from the database and Redis."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "receiver_dependency_up", "Whether the database and Redis answered this scrape.", labels=["dependency"]
        )
        try:
            counts = current_counts(self.svc)  # cached and shared: a scan of the inbox per scrape would not be cheap
            rows = [(source, status, n) for (source, status), n in current_status_counts(self.svc).items()]
            ignored = [
                (s, kind, platform, n) for (s, status, kind, platform), n in counts.items() if status == EventStatus.IGNORED
            ]
        except SQLAlchemyError as err:
            log.warning("metrics.database_unavailable error=%s", err.__class__.__name__)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from self._events(rows)
            yield self._ignored(ignored)
        try:
            depth = self.svc.redis.llen(self.svc.settings.namespace)
        except RedisError as err:
            log.warning("metrics.redis_unavailable error=%s", err.__class__.__name__)
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            queue = GaugeMetricFamily(
                "receiver_queue_depth", "Tasks waiting on the Celery queue (not those held for a countdown)."
            )
            queue.add_metric([], depth)
            yield queue
        yield up

    def _events(self, rows: list[Any]) -> Iterator[Metric]:
        # Every configured source and status gets a series, zero included, so alerts see a change from 0.
        counts = {(source, status): 0 for source in self.svc.settings.sources for status in EventStatus}
        counts.update({(source, status): n for source, status, n in rows})
        events = GaugeMetricFamily("receiver_events", "Inbox events by source and status.", labels=["source", "status"])
        dead = GaugeMetricFamily(
            "receiver_dead_letters", "Dead events waiting for a fix and a replay, by source.", labels=["source"]
        )
        for (source, status), n in sorted(counts.items()):
            events.add_metric([source, status], n)
            if status == EventStatus.DEAD:
                dead.add_metric([source], n)
        yield events
        yield dead


    def _ignored(self, rows: list[Any]) -> Metric:
        # Kind and platform, not the reason's text: both come from short fixed lists, so the
        # series stay few (a Taobao message that DajiSaaS cannot re-fetch is platform="taobao").
        ignored = GaugeMetricFamily(
            "receiver_ignored_events", "Events kept without a re-fetch, by source, kind and platform.",
            labels=["source", "kind", "platform"],
        )
        for source, kind, platform, n in sorted(rows, key=lambda r: tuple(str(v) for v in r)):
            ignored.add_metric([source, kind, platform or "none"], n)
        return ignored


class _ThisProcess:
    """The default registry's metrics, when there is no multiprocess directory to sum."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus' text format: this deployment's counters and the inbox's state."""
    svc = services()
    if svc.settings.metrics_require_token:
        check_bearer(request.headers.get("Authorization"), svc.settings.api_token)
    # A registry per scrape: the collectors read the database and Redis only when asked.
    registry = CollectorRegistry(auto_describe=False)
    if svc.settings.metrics_multiproc_dir:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(InboxCollector(svc))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.errorhandler(ReceiverError)
def metrics_error(err: ReceiverError) -> tuple[Response, int]:
    return jsonify(error=err.message), err.status
