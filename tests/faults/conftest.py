"""The fault suite's stack: real gunicorn, Celery worker and beat, a Redis of its own to stop and
start, the suite's database, and the loopback provider; plus a provider-side push driver."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import requests
from sqlalchemy import func, select

from receiver.errors import ProviderError
from receiver.models import Event, EventStatus, OrderChange
from receiver.orders import find_order
from receiver.providers import OrderRef, family_for
from receiver.sandbox import Sandbox
from tests.conftest import API_TOKEN, CREDENTIALS, ROOT, TOKENS, free_port, wait_for

SECRETS = [API_TOKEN, *TOKENS.values(), *(c.get("access_secret") or c.get("app_secret") for c in CREDENTIALS.values())]
COMPARED = ("status", "raw_status", "product_amount", "shipping_fee", "discount", "total_amount", "refund_amount")


class Stack:
    """The service's real processes, each one startable, stoppable and killable by a scenario.

    Workers are supervised as deploy/ does it (systemd, Compose, Kubernetes): one that exits
    unless a scenario stopped it is started again. Kombu can end a worker with "Unrecoverable
    error" (AttributeError ... 'hostname') when a task's late ack meets the reconnection after
    Redis died; what matters is that nothing is lost and the restarted worker catches up.
    """

    def __init__(self, environ: dict[str, str], tmp: Path) -> None:
        self.tmp = tmp
        self.redis_port, self.web_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **environ,
            "RECEIVER_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "RECEIVER_SWEEP_INTERVAL": "1",
            "RECEIVER_SWEEP_GRACE": "3",
            "RECEIVER_MAX_RETRIES": "10",
            "RECEIVER_RETRY_BACKOFF": "0.2",
            "RECEIVER_RETRY_BACKOFF_MAX": "1",
            "RECEIVER_DB_TIMEOUT": "1",
            "GUNICORN_BIND": f"127.0.0.1:{self.web_port}",
            "GUNICORN_WORKERS": "2",
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.stopped: set[str] = set()  # by the scenario: not to be restarted
        self.restarted: list[str] = []  # workers that exited on their own
        self.closing = threading.Event()
        self.spawning = threading.Lock()  # the supervisor and a scenario may start a worker at once
        self.supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        """What a process wrote so far."""
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_redis(self) -> None:
        self._spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(self.tmp)])
        client = redis.Redis(port=self.redis_port)
        wait_for(lambda: _pings(client), timeout=10)

    def start_web(self) -> None:
        self._spawn("web", [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"])
        wait_for(lambda: _answers(f"{self.url}/healthz"), timeout=20)

    def start_worker(self) -> None:
        with self.spawning:
            n = sum(1 for name in self.procs if name.startswith("worker"))
            # The prefork pool, as deployed (Procfile, deploy/).
            self._spawn(f"worker{n}", [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--concurrency", "2",
                                       "--loglevel", "INFO", "--without-gossip", "--without-mingle"])
        wait_for(lambda: "ready." in self.log(f"worker{n}"), timeout=30)

    def start_beat(self) -> None:
        self._spawn("beat", [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel", "INFO",
                             "--schedule", str(self.tmp / "beat-schedule")])

    def supervise(self) -> None:
        """Start restarting workers that exit on their own."""
        self.supervisor.start()

    def _supervise(self) -> None:
        while not self.closing.wait(0.5):
            for name, proc in list(self.procs.items()):
                if name.startswith("worker") and name not in self.stopped and proc.poll() is not None:
                    self.stopped.add(name)
                    self.restarted.append(name)
                    self.start_worker()

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.stopped.add(name)
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def worker_name(self) -> str:
        return [n for n in list(self.procs) if n.startswith("worker")][-1]

    def stop_all(self) -> None:
        self.closing.set()
        if self.supervisor.is_alive():
            self.supervisor.join()
        for name in reversed(list(self.procs)):
            self.stop(name, signal.SIGKILL if name == "redis" else signal.SIGTERM)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Push:
    """One push the provider owes us, and how many times it must reach us."""

    order_id: str
    headers: dict[str, str]
    body: bytes
    copies: int = 1


@dataclass
class Driver:
    """The provider's side: changes orders, pushes, and re-pushes what did not get a 200."""

    stack: Stack
    sandbox: Sandbox
    source: str = "demo"
    sent: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    owed: list[Push] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)

    @property
    def provider(self) -> Any:
        return self.sandbox.providers["xportcn"]

    def make_pushes(self, orders: int, changes: int, seed: int = 7) -> list[Push]:
        """`changes` changes on each of `orders` new orders; some pushes duplicated, all shuffled a little."""
        rng = random.Random(seed)
        self.orders = self.provider.add_orders(orders)
        pushes = []
        kinds = ("correct_price", "step_status", "refund")
        at_ms = int(time.time() * 1000)
        for step in range(changes):
            for order_id in self.orders:
                message_type = getattr(self.provider, kinds[(step + rng.randrange(3)) % 3])(order_id)
                at_ms += 1  # distinct push times, as the provider's own clock would give them
                headers, body = self.provider.push(order_id, message_type, signed=False, at_ms=at_ms)
                pushes.append(Push(order_id, headers, body, copies=rng.choice((1, 1, 1, 2, 3))))
        # Reorder within windows: delivery order is not guaranteed, old pushes may come after new.
        for i in range(0, len(pushes), 8):
            window = pushes[i : i + 8]
            rng.shuffle(window)
            pushes[i : i + 8] = window
        return pushes

    def deliver(self, pushes: list[Push], threads: int = 4) -> None:
        """POST every copy of every push; a push without a 200 stays owed (the provider retries it)."""
        url = f"{self.stack.url}/callbacks/{self.source}?token={TOKENS[self.source]}"
        http = requests.Session()

        def post(p: Push) -> tuple[Push, int]:
            try:
                return p, http.post(url, data=p.body, headers=p.headers, timeout=5).status_code
            except requests.RequestException:
                return p, 0

        jobs = [p for p in pushes for _ in range(p.copies)]
        with ThreadPoolExecutor(threads) as pool:
            for p, code in pool.map(post, jobs):
                self.sent += 1
                self.codes[code] += 1
                if code != 200 and p not in self.owed:
                    self.owed.append(p)
                elif code == 200 and p in self.owed:
                    self.owed.remove(p)

    def retry_owed(self) -> None:
        """The provider's later retries of what failed."""
        owed, self.owed = self.owed, []
        for p in owed:
            p.copies = 1
        self.deliver(owed)


@dataclass
class Summary:
    """What a scenario ends with; printed as one line."""

    name: str
    pushes: int
    events: int
    processed: int
    dead: int
    lost: int
    duplicate_effects: int
    mismatched: list[str]

    def line(self) -> str:
        return (f"fault scenario {self.name}: pushes sent {self.pushes}, events {self.events}, processed {self.processed}, "
                f"dead {self.dead}, lost {self.lost}, duplicate effects {self.duplicate_effects}, orders off {len(self.mismatched)}")


def settle(app: Any, stack: Stack, timeout: float = 90) -> None:
    """Wait until no event waits for a worker any more; on time-out, say what was left and why."""
    waiting = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED)
    engine = app.extensions["receiver"].engine

    def quiet() -> bool:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Event).where(Event.status.in_(waiting))) == 0

    try:
        wait_for(quiet, timeout=timeout, interval=0.5)
    except AssertionError:
        with engine.connect() as conn:
            left = dict(conn.execute(select(Event.status, func.count()).group_by(Event.status)).all())
        tails = {n: stack.log(n)[-2000:] for n in stack.procs if n != "redis"}
        raise AssertionError(f"not settled after {timeout}s: {left}\n" + "\n".join(f"--- {n}\n{t}" for n, t in tails.items())) from None


def summarise(name: str, app: Any, driver: Driver, settings: Any, expected_pushes: list[Push]) -> Summary:
    """Compare our state with the provider's truth and count what was lost or doubled."""
    svc = app.extensions["receiver"]
    source = settings.sources[driver.source]
    family = family_for(source.family)
    http = requests.Session()
    with svc.Session() as session:
        statuses = Counter(session.scalars(select(Event.status)))
        stored_orders = Counter(session.scalars(select(Event.order_id)))
        doubled = session.execute(
            select(func.count()).select_from(
                select(OrderChange.order_id, OrderChange.field, OrderChange.old, OrderChange.new)
                .group_by(OrderChange.order_id, OrderChange.field, OrderChange.old, OrderChange.new)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        mismatched = []
        for order_id in driver.orders:
            try:
                truth = family.fetch_orders(http, source, OrderRef("1688", order_id, {"tbOrderId": order_id}))[0]
            except ProviderError:  # the provider will not tell: we cannot be equal to it
                mismatched.append(order_id)
                continue
            ours = find_order(session, driver.source, order_id)
            if ours is None or any(getattr(ours, f) != getattr(truth, f) for f in COMPARED):
                mismatched.append(order_id)
    pushes_per_order = Counter(p.order_id for p in expected_pushes)
    lost = sum(max(0, n - stored_orders[o]) for o, n in pushes_per_order.items()) + len(driver.owed)
    return Summary(name, driver.sent, sum(statuses.values()), statuses[EventStatus.PROCESSED],
                   statuses[EventStatus.DEAD], lost, doubled, mismatched)


@pytest.fixture
def stack(environ: dict[str, str], tmp_path: Path, app: Any) -> Iterator[Stack]:
    """Redis, gunicorn, a worker and beat, started; all stopped after the scenario."""
    s = Stack(environ, tmp_path)
    try:
        s.start_redis()
        s.start_web()
        s.start_worker()
        s.start_beat()
        s.supervise()
        yield s
    finally:
        s.stop_all()
    logs = {name: s.log(name) for name in s.procs}
    leaked = [(name, secret[:4] + "…") for name, text in logs.items() for secret in SECRETS if secret in text]
    assert not leaked, f"secrets in the logs: {leaked}"


@pytest.fixture
def driver(stack: Stack, sandbox: Sandbox) -> Driver:
    """The provider side of a scenario."""
    return Driver(stack, sandbox)
