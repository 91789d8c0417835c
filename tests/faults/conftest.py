"""The fault suite's stack: real gunicorn, Celery worker and beat, a Redis of its own to stop and
start, the suite's database, and the loopback provider; plus a provider-side push driver."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import func, select

from receiver.config import load_settings
from receiver.models import Event, EventStatus, OrderChange
from receiver.orders import find_order
from receiver.sandbox import Sandbox
from receiver.sandbox.xportcn import STATUS_NAMES
from tests.conftest import API_TOKEN, CREDENTIALS, ROOT, TOKENS, free_port, wait_for
from workers.pipeline import CLAIM_TTL

SECRETS = [API_TOKEN, *TOKENS.values(), *(c.get("access_secret") or c.get("app_secret") for c in CREDENTIALS.values())]
WAITING = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.FAILED)
# Our order's fields and the provider's own record's (the 1688 order page, amounts in fen): the truth
# in the provider's terms, not through our mapping of it.
IN_PROVIDER_TERMS = {
    "product_amount": "productAmount", "shipping_fee": "shippingFee", "discount": "discount",
    "total_amount": "totalAmount", "refund_amount": "refundAmount",
}


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


@dataclass(eq=False)  # compared by identity: two pushes are never the same push
class Push:
    """One push the provider owes us, and how many times it must reach us."""

    order_id: str
    headers: dict[str, str]
    body: bytes
    copies: int = 1
    acked: bool = False  # some delivery of it got a 200: from then on, it is ours to keep

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


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
        """POST every copy of every push; a push none of whose copies got a 200 stays owed (the
        provider retries it). A copy refused after another was taken owes nothing: we hold the push."""
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
                p.acked = p.acked or code == 200
        owed = self.owed + [p for p in pushes if all(p is not q for q in self.owed)]
        self.owed = [p for p in owed if not p.acked]

    def retry_owed(self, times: int = 5) -> None:
        """The provider's later retries of what got no 200 (the Xportcn family retries 5 times)."""
        for _ in range(times):
            if not self.owed:
                return
            for p in self.owed:
                p.copies = 1
            self.deliver(list(self.owed))


@dataclass
class Settled:
    """How the wait for the workers ended: after how long, and which events were still not final."""

    seconds: float
    stuck: dict[str, int]  # status -> events still received, queued or failed at the deadline
    detail: str = ""  # then: the processes' last lines, to tell why


@dataclass
class Summary:
    """What a scenario ends with; printed as one line.

    lost: pushes we answered 200 and do not hold (the one thing that must never happen);
    owed: pushes that never got a 200, even after the provider's retries (it would go on retrying);
    stuck: events still waiting for a worker when settling gave up (late ones: settled.seconds).
    """

    name: str
    pushes: int
    events: int
    processed: int
    dead: int
    lost: int
    duplicate_effects: int
    mismatched: list[str]
    owed: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    settled: Settled | None = None

    @property
    def stuck(self) -> int:
        return sum(self.settled.stuck.values()) if self.settled else 0

    def line(self) -> str:
        codes = " ".join(f"{code or 'no-answer'}:{n}" for code, n in sorted(self.codes.items()))
        waited = f", settled in {self.settled.seconds:.1f}s, stuck {self.stuck}" if self.settled else ""
        return (f"fault scenario {self.name}: pushes sent {self.pushes} ({codes}), events {self.events}, processed {self.processed}, "
                f"dead {self.dead}, lost {self.lost}, owed {self.owed}{waited}, duplicate effects {self.duplicate_effects}, "
                f"orders off {len(self.mismatched)}")


def settle_deadline(settings: Any) -> float:
    """How long events may take to become final after a fault, by the service's own timings.

    A worker that dies holding an order's re-fetch leaves the order's claim in Redis for CLAIM_TTL:
    until it expires, the sweeper's re-queues of that order's events are coalesced into the dead
    claim. Then the next sweep (every interval, for events untouched for the grace, failed ones a
    backoff later) takes them. Plus time for the work itself on a loaded machine.
    """
    return CLAIM_TTL + settings.sweep_grace + settings.retry_backoff_max + settings.sweep_interval + 45


def settle(app: Any, stack: Stack, timeout: float | None = None) -> Settled:
    """Wait until every event is final (none received, queued or failed), or until the deadline;
    return how long it took and what was still waiting then, for the scenario to judge."""
    engine = app.extensions["receiver"].engine
    if timeout is None:
        timeout = settle_deadline(load_settings(stack.env))
    started = time.monotonic()

    def waiting() -> dict[str, int]:
        with engine.connect() as conn:
            return dict(conn.execute(select(Event.status, func.count()).where(Event.status.in_(WAITING)).group_by(Event.status)).all())

    try:
        wait_for(lambda: not waiting(), timeout=timeout, interval=0.5)
    except AssertionError:
        tails = {n: stack.log(n)[-2000:] for n in stack.procs if n != "redis"}
        return Settled(time.monotonic() - started, waiting(), "\n".join(f"--- {n}\n{t}" for n, t in tails.items()))
    return Settled(time.monotonic() - started, {})



def summarise(
    name: str, app: Any, driver: Driver, settings: Any, expected_pushes: list[Push], settled: Settled | None = None
) -> Summary:
    """Compare our state with the provider's truth and count what was lost, owed, stuck or doubled."""
    svc = app.extensions["receiver"]
    with svc.Session() as session:
        statuses = Counter(session.scalars(select(Event.status)))
        stored = {hashlib.sha256(body).hexdigest() for body in session.scalars(select(Event.body))}
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
            if order_id in driver.sandbox.faults.broken_orders:  # the provider will not tell: we cannot be equal to it
                mismatched.append(order_id)
                continue
            record = driver.provider.order(order_id)
            ours = find_order(session, driver.source, order_id)
            if (
                ours is None
                or any(getattr(ours, ours_name) != record[theirs] for ours_name, theirs in IN_PROVIDER_TERMS.items())
                or ours.raw_status != STATUS_NAMES[record["orderStatus"]]
                or [(line.quantity, line.amount, line.refund_amount) for line in ours.lines]
                != [(d["quantity"], d["itemAmount"], d["refund"]) for d in record["orderDetailInfoVOS"]]
            ):
                mismatched.append(order_id)
    # Each push by its body: a push we answered 200 must be in the inbox; one we never answered 200
    # is the provider's to retry, not lost (though we may hold it: the answer can be lost after the commit).
    lost = sum(1 for p in expected_pushes if p.acked and p.sha256 not in stored)
    return Summary(name, driver.sent, sum(statuses.values()), statuses[EventStatus.PROCESSED],
                   statuses[EventStatus.DEAD], lost, doubled, mismatched, owed=len(driver.owed), codes=dict(driver.codes),
                   settled=settled)


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
