"""Gunicorn settings for the receiver; every value can be overridden from the environment."""
import os
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Chosen by `make bench` on 2 cores (docs/benchmarks.md), receiver under wrk, 16 connections:
#   2 x gthread, 4 threads: 408 req/s, 2.58 ms CPU per push
#   2 x gthread, 2 threads: 525 req/s, 2.03 ms CPU per push   <- this
#   2 x gthread, 1 thread : 1.96 ms CPU per push, but a push waiting on Redis idles its process
#   3 or 4 x gthread, 1 thread, or 3 x sync: 2.1 to 2.9 ms CPU per push
# One process per core; a second thread overlaps a push's Redis and SQLite waits with another's
# work, more threads only fight over the GIL (CPU per push grows with the thread count). gthread
# over sync keeps connections alive and does not let a slow client hold the only thread.
# The database pool (5 per process, receiver/db.py; 1 on SQLite) must stay >= threads.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# Providers wait 1000 ms for our answer; a request still running after 30 s is stuck, not slow.
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# The path without its query string: the callback token travels in the query and must not be logged.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Gunicorn's workers are processes of their own: prometheus_client (imported by the app, after this
# file) writes each one's counts to files here, and /metrics sums them.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.abspath(os.path.join("var", "prometheus-web")))


def on_starting(server):  # type: ignore[no-untyped-def]
    """Start the counts from zero: a previous run's files would be summed with this one's."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """Drop a dead worker's live gauges (its counters stay in the sums, as they should)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
