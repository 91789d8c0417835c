"""The receiver: a Flask app that takes provider pushes, and the Celery app its workers run."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from receiver import logs
from receiver.config import Settings, load_settings
from receiver.services import Services


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment (or from `test_config`, whose SETTINGS wins)."""
    app = Flask(__name__)
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings(os.environ)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # Requests for other Host names get 400 (Flask checks them): nothing is built from a forged one.
        TRUSTED_HOSTS=list(settings.allowed_hosts) or None,
        CELERY=celery_config(settings),
    )
    app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # "/admin" serves "/admin/" rather than redirecting to an absolute URL built from the Host header.
    app.url_map.strict_slashes = False
    logs.configure(settings.log_level, settings.log_format)
    if settings.trusted_proxies:
        # Client addresses for allow-lists come from exactly this many trusted hops, never from a
        # header a client alone could set.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.extensions["receiver"] = Services(settings)

    from receiver import admin, api, callbacks, health, metrics
    from receiver.alerts import RejectionCounter
    from receiver.publisher import Publisher
    from receiver.stats import Tally

    app.register_blueprint(callbacks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(admin.bp)
    celery_init_app(app)
    app.extensions["publisher"] = Publisher(app)
    app.extensions["rejections"] = RejectionCounter(app)
    app.extensions["stats"] = Tally(app)
    return app


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings, chosen here and nowhere else."""
    return {
        "broker_url": settings.broker_url,
        "task_ignore_result": True,
        "task_default_queue": settings.namespace,
        # JSON only: a pickled message from a compromised broker would run code.
        "task_serializer": "json",
        "accept_content": ["json"],
        # At-least-once: a task is acknowledged after it ran, and re-delivered if its worker died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One task at a time per worker process: a re-fetch can wait on the provider for seconds, and
        # prefetched tasks would wait behind it instead of going to an idle worker.
        "worker_prefetch_multiplier": 1,
        # Soft shutdown: on Ctrl-C/SIGQUIT, running tasks get this long to finish, and tasks held for a
        # countdown (retries, coalesced re-fetches) go back to Redis instead of waiting for the
        # visibility timeout, also when the worker is idle.
        "worker_soft_shutdown_timeout": 10.0,
        "worker_enable_soft_shutdown_on_idle": True,
        # A publish (the web's publisher thread, the sweeper, a replay) fails fast when Redis is down:
        # the inbox keeps the event, and the sweeper queues it later.
        "task_publish_retry": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Longer than any retry countdown, or Redis re-delivers a task that is merely waiting.
            "visibility_timeout": int(settings.retry_backoff_max) + 3600,
            "socket_timeout": 2,
            "socket_connect_timeout": 0.5,
            # How long a publish may try to reach Redis: one quick retry, well inside the provider's
            # 1000 ms. The worker's consumer reconnects on its own terms (broker_connection_*).
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.1,
            "connect_retries_timeout": 0.5,
            # Used only with a sentinel:// broker URL: the master group Sentinel watches.
            "master_name": settings.redis_master_name,
        },
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sweep-inbox": {"task": "workers.tasks.sweep_inbox", "schedule": settings.sweep_interval},
            "check-backlog": {"task": "workers.tasks.check_backlog", "schedule": 60.0},
            "purge-events": {"task": "workers.tasks.purge_events", "schedule": 3600.0},
            # One reconciliation per source; the window (default 24 h) is far longer than the
            # interval (default 1 h), so consecutive runs overlap and a missed run loses nothing.
            **{
                f"reconcile-{name}": {
                    "task": "workers.tasks.reconcile_source",
                    "schedule": settings.reconcile_interval,
                    "args": (name,),
                }
                for name in settings.sources
            },
            # Open orders with no news: what neither a lost push nor the creation-time window repairs.
            **{
                f"refresh-open-{name}": {
                    "task": "workers.tasks.refresh_open_orders",
                    "schedule": min(settings.refresh_open_after / 4, 900.0),
                    "args": (name,),
                }
                for name in settings.sources
            },
        },
        "beat_schedule_filename": os.path.join("var", "celerybeat-schedule"),
        "include": ["workers.tasks"],
    }


def celery_init_app(app: Flask) -> Celery:
    """Attach a Celery app whose tasks run inside this Flask app's context."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
