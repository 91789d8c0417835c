"""Gunicorn settings for the receiver; every value can be overridden from the environment."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Chosen by `make bench` on 2 cores (docs/benchmarks.md): the receiver under wrk, 16 connections,
# signed pushes, SQLite, after the ingest path was made lean (CPU per push in ms):
#   2 x gthread, 2 threads: 1,350-1,780 req/s, 0.96-1.24 ms, p99 21-35 ms   <- this
#   2 x gthread, 1 thread : 1,650-1,680 req/s, 1.02-1.05 ms, p99 22-29 ms
#   3 x gthread, 1 thread : 1,590-1,650 req/s, 1.07-1.10 ms, p99 30-31 ms
#   1 x gthread, 1 thread :   920-990 req/s,   1.09-1.16 ms (one core)
#   2 x sync              : 1,660-1,770 req/s, 0.94-1.00 ms, p99 17-18 ms
# Again once the nonce check moved into the INSERT (2 runs each, same hour; ratio, CPU per push):
#   2 x gthread, 2 threads: 0.40-0.44, 1.13-1.32 ms;  2 x 1 thread: 0.43-0.49, 0.98-1.19 ms;
#   3 x gthread, 1 thread : 0.43-0.50, 1.13-1.26 ms.
# Again on 2026-11-27, 2 x 2 against 2 x 1 (three interleaved pairs; pushes/s): 1,332-1,390 against
#   1,285-1,383, p99 alike; on PostgreSQL 704-845 against 691-753. The ratio reads higher with one
#   thread only because the ceiling slows down (docs/benchmarks.md).
# Within the machine's noise (runs of one configuration differ by 20%) two processes are as good as
# any: one per core. Of those, gthread keeps working while a thread waits on the database (on
# PostgreSQL every statement is a round trip) or on a slow client, where a sync worker would idle
# its only process; a second thread costs no measured throughput and keeps a process answering
# then, while a third thread or process only adds GIL turns and context switches.
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

# A callback URL carries its source's secret as ?token=. gunicorn writes a request line it refuses in
# full to the error log ("Invalid request from ip=…: Invalid HTTP request line: 'POST /callbacks/x?token=…
# junk'"), and an access_log_format with %(r)s, %(q)s or a Referer would write it too: every line of
# both logs has any `…token=<value>` masked.
SECRET_IN_URL = re.compile(r"([\w.-]*token=)[^&;\s'\"]+", re.IGNORECASE)


class _MaskTokens(logging.Filter):
    """Rewrite a record's text (its traceback included) with every token=<value> masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: the handler reports it, as without us
            return True
        record.msg, record.args = SECRET_IN_URL.sub(r"\1***", message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SECRET_IN_URL.sub(r"\1***", record.exc_text)
        return True


class MaskingLogger(Logger):
    """gunicorn's logger, with tokens in URLs masked on the error log and the access log."""

    def setup(self, cfg):  # type: ignore[no-untyped-def]
        super().setup(cfg)
        # setup() runs again on every reload (HUP): one filter per logger is enough.
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, _MaskTokens) for f in log.filters):
                log.addFilter(_MaskTokens())


logger_class = MaskingLogger

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
