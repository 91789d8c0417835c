"""Gunicorn settings for the receiver; every value can be overridden from the environment."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
# Two processes (one per core) of two threads, chosen by `make bench` (the figures, and the
# configurations measured against it: docs/benchmarks.md, "Gunicorn's processes and threads"). Within
# the machine's noise two processes are as good as any; gthread keeps working while a thread waits on
# the database (on PostgreSQL every statement is a round trip) or on a slow client, where a sync
# worker would idle its only process; a second thread costs no measured throughput and keeps a
# process answering then, while a third thread or process only adds GIL turns and context switches.
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
