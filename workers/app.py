"""The Celery app the worker and beat run: `celery -A workers.app worker`."""
from __future__ import annotations

from celery.signals import worker_init

from receiver import create_app, metrics

flask_app = create_app()
celery_app = flask_app.extensions["celery"]


@worker_init.connect
def serve_metrics(**_: object) -> None:
    """A worker's counters on RECEIVER_WORKER_METRICS_PORT: it has no HTTP port of its own otherwise."""
    metrics.serve_worker_metrics(flask_app.extensions["receiver"].settings)
