"""Fixtures: a real database (SQLite or PostgreSQL), real Redis, a real Celery worker, a loopback provider."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, delete, func, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from receiver import create_app
from receiver.config import Settings, load_settings
from receiver.migrate import upgrade
from receiver.models import Alert, Event, Order, OrderChange, OrderLine, SpentNonce
from receiver.providers import FAMILIES
from receiver.sandbox import Sandbox, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
API_TOKEN = "test-api-token-0123456789"
SOURCES = {
    # name: (family, mount prefix, options)
    "demo": ("xportcn", "xportcn", {"portal": "pandapon"}),
    "xport": ("xportcn", "xport", {"portal": "xportcn"}),
    "thai": ("xportcn", "thai", {"portal": "thai"}),
    "daji": ("dajisaas", "dajisaas", {}),
}
CREDENTIALS = {
    "demo": {"access_key": "ak-demo", "access_secret": "demo-secret-0001", "user_id": "2100007341207"},
    "xport": {"access_key": "ak-xport", "access_secret": "xport-secret-0004", "user_id": "2100005349129"},
    "thai": {"access_key": "ak-thai", "access_secret": "thai-secret-0002", "user_id": "2219093763101"},
    "daji": {"app_key": "ak-daji", "app_secret": "daji-secret-0003"},
}
TOKENS = {"demo": "cb-token-demo-0123456789", "xport": "cb-token-xport-012345678", "thai": "cb-token-thai-0123456789", "daji": "cb-token-daji-0123456789"}


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database: RECEIVER_TEST_DATABASE_URL's server (a new database on it) or SQLite."""
    base = os.environ.get("RECEIVER_TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'receiver.db'}"
        upgrade(url)
        yield url
        return
    name = f"receiver_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The real Redis the suite uses."""
    url = os.environ.get("RECEIVER_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
    redis.Redis.from_url(url).ping()
    return url


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The loopback provider, serving every test source under its own prefix."""
    box = Sandbox().start()
    yield box
    box.stop()


def fresh_providers(box: Sandbox) -> None:
    """Mount new provider state (seed orders, no faults) for every test source."""
    for name, (family, prefix, options) in SOURCES.items():
        box.mount(prefix, FAMILIES[family].sandbox({**CREDENTIALS[name], **options}))
    box.faults.__init__()  # type: ignore[misc]
    box.calls.clear()


class Sinks:
    """Where the suite's alerts go: a webhook/Slack catcher over HTTP and an SMTP server, both real."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.mails: list[Any] = []
        sinks = self

        class Catch(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sinks.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                sinks.posts.append((self.path, {}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Mailbox:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
                sinks.mails.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Catch)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.smtp = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
        self.smtp.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def toml(self) -> str:
        """The `[alerts]` table that sends every alert to these sinks."""
        return "\n".join([
            "[alerts]", "dedupe_window = 600", f'webhook_url = "{self.url}/hook"', f'slack_webhook_url = "{self.url}/slack"',
            "[alerts.email]", 'host = "127.0.0.1"', f"port = {self.smtp.port}",
            'sender = "receiver@example.com"', 'recipients = ["ops@example.com"]', "starttls = false",
            "[alerts.rules.push_rejections]", "threshold = 5",
            "[alerts.rules.price_corrected]", "threshold = 0.1", "",
        ])

    def clear(self) -> None:
        self.posts.clear()
        self.mails.clear()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.smtp.stop()


@pytest.fixture(scope="session")
def sinks() -> Iterator[Sinks]:
    """The alert sinks every test's alerts are delivered to."""
    s = Sinks()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def environ(tmp_path_factory: pytest.TempPathFactory, database_url: str, broker_url: str, sandbox: Sandbox, sinks: Sinks) -> dict[str, str]:
    """The RECEIVER_* environment of the web app and the worker: one namespace per run."""
    path = tmp_path_factory.mktemp("conf") / "sources.toml"
    lines = []
    for name, (family, prefix, options) in SOURCES.items():
        lines.append(f"[sources.{name}]")
        table = {"family": family, "base_url": sandbox.base_url(prefix), "callback_token": TOKENS[name],
                 "timeout": 1.0, **CREDENTIALS[name], **options}
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines) + "\n" + sinks.toml())
    return {
        "RECEIVER_DATABASE_URL": database_url,
        "RECEIVER_BROKER_URL": broker_url,
        "RECEIVER_API_TOKEN": API_TOKEN,
        "RECEIVER_SOURCES_FILE": str(path),
        "RECEIVER_NAMESPACE": f"receiver-test-{uuid.uuid4().hex[:8]}",
        "RECEIVER_RETRY_BACKOFF": "0.2",
        "RECEIVER_COUNTS_TTL": "0",  # tests read counts right after changing them
        "RECEIVER_RETRY_BACKOFF_MAX": "1",
        "RECEIVER_MAX_RETRIES": "3",
        "RECEIVER_COALESCE_WINDOW": "0.3",
        "RECEIVER_LOG_LEVEL": "INFO",
        "RECEIVER_LOG_FORMAT": "json",  # what the log tests read, whatever the caller exported
    }


@pytest.fixture(scope="session")
def settings(environ: dict[str, str]) -> Settings:
    """The settings every in-process app of the suite starts from."""
    return load_settings(environ)


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    """The receiver's Flask app on the test settings."""
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["receiver"].dispose()


@pytest.fixture
def make_app(app, settings: Settings) -> Iterator[Callable[..., Any]]:  # type: ignore[no-untyped-def]
    """Build extra apps on changed settings (`make_app(broker_url=...)`); closes their pools after."""
    apps = []

    def build(**changes: Any):  # type: ignore[no-untyped-def]
        extra = create_app({"SETTINGS": dataclasses.replace(settings, **changes), "TESTING": True})
        apps.append(extra)
        return extra

    yield build
    for extra in apps:
        extra.extensions["receiver"].dispose()
    # Each app made itself Celery's current and default app, which shared tasks publish through: give it back.
    app.extensions["celery"].set_current()
    app.extensions["celery"].set_default()


@pytest.fixture(scope="session")
def live_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app served over real HTTP on 127.0.0.1, for clients in other threads or processes."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """A test client of the app."""
    return app.test_client()


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the worker process writes its output (log lines)."""
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker_metrics_url() -> str:
    """Where the worker process serves its Prometheus metrics."""
    return f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture(scope="session")
def worker(environ: dict[str, str], worker_log: Path, worker_metrics_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process consuming the run's queue on the real Redis."""
    log_path = worker_log
    port = urlsplit(worker_metrics_url).port
    env = {**os.environ, **environ, "PYTHONUNBUFFERED": "1", "RECEIVER_WORKER_METRICS_PORT": str(port)}
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--pool", "threads",
           "--concurrency", "4", "--queues", environ["RECEIVER_NAMESPACE"], "--loglevel", "INFO",
           "--without-gossip", "--without-mingle", "--without-heartbeat", "--task-events"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"ready." in log_path.read_bytes() or proc.poll() is not None, timeout=30)
        if proc.poll() is not None:
            raise RuntimeError("worker did not start:\n" + log_path.read_text())
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        r = redis.Redis.from_url(environ["RECEIVER_BROKER_URL"])
        for key in r.scan_iter(f"{environ['RECEIVER_NAMESPACE']}*"):
            r.delete(key)


_previous: dict[str, bool] = {}  # whether the previous test ran with the worker


def settle_previous(services: Any) -> None:
    """Let the previous test's work finish (its retries, its trailing re-fetches) before cleaning,
    so that no late task of it lands in this test's state."""
    waiting = ("received", "queued", "failed")

    def quiet() -> bool:
        with services.engine.connect() as conn:
            return not conn.scalar(select(func.count()).select_from(Event).where(Event.status.in_(waiting)))

    try:
        wait_for(quiet, timeout=10)
    except AssertionError:
        pass  # a test that left events waiting on purpose (no worker ran): they are deleted below
    if any(services.redis.scan_iter(services.key("pending", "*"))):
        time.sleep(services.settings.coalesce_window + 0.2)


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty database and freshly seeded providers."""
    if "app" in request.fixturenames or "worker" in request.fixturenames:
        app = request.getfixturevalue("app")
        # A command run through CliRunner made its own app Celery's default, and a task called in the
        # test would run in that app's context, on its engine, disposed with it: give ours back.
        app.extensions["celery"].set_default()
        app.extensions["celery"].set_current()
        services = app.extensions["receiver"]
        if _previous.get("worker"):
            settle_previous(services)
        _previous["worker"] = "worker" in request.fixturenames
        fresh_providers(request.getfixturevalue("sandbox"))
        request.getfixturevalue("sinks").clear()
        # Tasks a previous test left queued, its refused-push counters, its open-order refreshes and its charts' counts.
        left = [*services.redis.scan_iter(services.key("rejections", "*")), *services.redis.scan_iter(services.key("refreshed", "*")),
                *services.redis.scan_iter(services.key("stats", "*"))]
        services.redis.delete(services.settings.namespace, *left)
        engine = services.engine
        with engine.begin() as conn:
            for table in (OrderChange, OrderLine, Order, Event, SpentNonce, Alert):
                conn.execute(delete(table))
    yield


# --- for the fast (`unit`) tests: no Redis, no worker, no server --------------------------------
class FakeRedis:
    """The few Redis commands the pipeline and the alerts use, on a dict; expiry is noted, not applied:
    a fast test never outlives a key."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.expiry: dict[str, float] = {}

    def set(self, key: str, value: Any, nx: bool = False, ex: float | None = None) -> bool | None:
        if value is None:  # as redis-py: only bytes, strings and numbers are stored
            raise redis.exceptions.DataError("Invalid input of type: 'NoneType'")
        if nx and key in self.data:
            return None
        self.data[key] = str(value).encode()
        if ex is not None:
            self.expiry[key] = ex
        return True

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def mget(self, keys: list[str]) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def delete(self, *keys: str) -> int:
        return sum(self.data.pop(k, None) is not None for k in keys)

    def incrby(self, key: str, amount: int) -> int:
        self.data[key] = str(int(self.data.get(key, b"0")) + amount).encode()
        return int(self.data[key])

    def expire(self, key: str, seconds: float) -> bool:
        self.expiry[key] = seconds
        return key in self.data

    def pipeline(self) -> FakePipeline:
        return FakePipeline(self)

    def register_script(self, script: str) -> Callable[..., int]:
        """A Lua script stands in as: every call answers 0 (the rate limiter's "a token is free")."""
        def run(keys: list[str], args: list[Any]) -> int:
            self.scripts_run.append((keys, args))
            return 0
        self.scripts_run: list[tuple[list[str], list[Any]]] = getattr(self, "scripts_run", [])
        return run


class FakePipeline:
    """Redis's pipeline: commands queued (chainable), run in order by execute()."""

    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.queued = redis, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Callable[..., FakePipeline]:
        def queue(*args: Any, **kwargs: Any) -> FakePipeline:
            self.queued.append((getattr(self.redis, name), args, kwargs))
            return self
        return queue

    def execute(self) -> list[Any]:
        results = [command(*args, **kwargs) for command, args, kwargs in self.queued]
        self.queued = []
        return results


@pytest.fixture(scope="session")
def unit_services_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Services on a SQLite file with tables made from the models, shared by the fast tests."""
    from receiver.config import Source
    from receiver.models import Base
    from receiver.services import Services

    sources = {
        name: Source(name=name, family=family, base_url=f"https://{prefix}.example", callback_token=TOKENS[name],
                     credentials={**CREDENTIALS[name], **options})
        for name, (family, prefix, options) in SOURCES.items()
    }
    path = tmp_path_factory.mktemp("unit") / "unit.db"
    settings = Settings(database_url=f"sqlite:///{path}", broker_url="redis://127.0.0.1:1/0",
                        api_token=None, sources=sources, sources_file="", namespace="unit")
    svc = Services(settings)
    Base.metadata.create_all(svc.engine)
    yield svc
    svc.engine.dispose()
    svc.read_engine.dispose()


@pytest.fixture
def unit_services(unit_services_once: Any) -> Iterator[Any]:
    """Real Services on an emptied SQLite file and a FakeRedis, never connected: for fast tests."""
    from receiver.models import Base

    svc = unit_services_once
    settings = svc.settings
    svc.__dict__["redis"] = FakeRedis()  # a cached_property: set here
    yield svc
    svc.settings = settings  # tests change settings and stand-ins on the shared object: put them back
    svc.__dict__.pop("redis", None)
    svc.__dict__.pop("http", None)
    with svc.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
