"""Nothing lost, nothing done twice: the real processes, broken on purpose while pushes arrive."""
from __future__ import annotations

import signal
import threading
import time

from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from receiver.cli import main
from tests.conftest import wait_for
from tests.faults.conftest import settle, summarise

ORDERS, CHANGES = 30, 10  # 300 distinct pushes, about 400 deliveries with the duplicates


def check(summary, capsys, dead: int = 0) -> None:  # type: ignore[no-untyped-def]
    with capsys.disabled():
        print("\n" + summary.line())
    assert summary.lost == 0
    assert summary.duplicate_effects == 0
    assert summary.dead == dead
    assert summary.processed == summary.events - dead
    assert summary.mismatched == []


def test_redis_stopped_during_the_pushes(app, stack, driver, settings, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    half = len(pushes) // 2
    driver.deliver(pushes[:half])
    stack.stop("redis", signal.SIGKILL)  # and everything it held: queued tasks, claims, nonces
    driver.deliver(pushes[half:])
    assert driver.codes[200] == driver.sent  # the inbox kept answering
    stack.start_redis()
    settle(app, stack)
    check(summarise("redis-stopped", app, driver, settings, pushes), capsys)


def test_worker_killed_mid_task_then_restarted(app, stack, driver, sandbox, settings, capsys):
    sandbox.faults.latency = 0.05  # so that tasks are in flight when the kill comes
    pushes = driver.make_pushes(ORDERS, CHANGES)
    sender = threading.Thread(target=driver.deliver, args=(pushes,))
    sender.start()
    wait_for(lambda: sandbox.fetches() >= 10, timeout=30)
    stack.stop(stack.worker_name(), signal.SIGKILL)
    sender.join()
    sandbox.faults.latency = 0
    stack.start_worker()
    settle(app, stack)
    check(summarise("worker-killed", app, driver, settings, pushes), capsys)


def test_provider_fails_for_a_while_then_recovers(app, stack, driver, sandbox, settings, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    sandbox.faults.fail_rate, sandbox.faults.timeout_delay = 1.0, 1.5  # every call fails, one way...
    driver.deliver(pushes[: len(pushes) // 3])
    for mode in ("http500", "http429", "timeout"):  # ...then another, while retries come in
        sandbox.faults.fail_mode = mode
        time.sleep(0.7)
    sandbox.faults.fail_rate = 0.0
    driver.deliver(pushes[len(pushes) // 3 :])
    settle(app, stack)
    assert {500, 429} <= {status for _, _, status in sandbox.calls}
    check(summarise("provider-flaky", app, driver, settings, pushes), capsys)


def test_permanent_error_for_one_order_is_dead_alerted_and_replayable(app, stack, driver, sandbox, settings, environ, monkeypatch, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    broken = driver.orders[0]
    sandbox.faults.broken_orders[broken] = (1001, "order frozen by risk control")
    driver.deliver(pushes)
    settle(app, stack)
    summary = summarise("permanent-error", app, driver, settings, pushes)
    with capsys.disabled():
        print("\n" + summary.line())
    assert summary.dead >= 1 and summary.mismatched == [broken] and summary.lost == 0
    assert "alert.dead_letter" in "".join(stack.log(n) for n in stack.procs if n.startswith("worker"))
    del sandbox.faults.broken_orders[broken]
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RECEIVER_BROKER_URL", stack.env["RECEIVER_BROKER_URL"])
    result = CliRunner().invoke(main, ["events", "replay", "--status", "dead", "--source", "demo"])
    assert result.exit_code == 0, result.output
    settle(app, stack)
    check(summarise("permanent-error-replayed", app, driver, settings, pushes), capsys)


def test_database_unavailable_for_a_moment(app, stack, driver, settings, database_url, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    third = len(pushes) // 3
    driver.deliver(pushes[:third])
    with database_outage(database_url):
        driver.deliver(pushes[third : 2 * third])
        assert driver.codes[503] > 0 and driver.owed  # refused, so the provider retries them
    driver.deliver(pushes[2 * third :])
    driver.retry_owed()  # the provider's retry half an hour later
    settle(app, stack)
    check(summarise("database-down", app, driver, settings, pushes), capsys)


def test_same_push_five_times_and_old_after_new(app, stack, driver, settings, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    for p in pushes:
        p.copies = 5 if p.order_id in driver.orders[:5] else p.copies
    driver.deliver(list(reversed(pushes)))  # every old push after the newer ones
    settle(app, stack)
    check(summarise("duplicates-and-reordering", app, driver, settings, pushes), capsys)


class database_outage:  # noqa: N801 - used as a context manager, reads as a phrase
    """Make the database refuse work: PostgreSQL stops taking connections; SQLite is locked."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        if self.url.startswith("sqlite"):
            self.engine = create_engine(self.url, isolation_level=None)
            self.conn = self.engine.connect()
            self.conn.exec_driver_sql("BEGIN EXCLUSIVE")
            return
        name = make_url(self.url).database
        self.engine = create_engine(make_url(self.url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with self.engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})

    def __exit__(self, *exc: object) -> None:
        if self.url.startswith("sqlite"):
            self.conn.exec_driver_sql("ROLLBACK")
            self.conn.close()
        else:
            with self.engine.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{make_url(self.url).database}" ALLOW_CONNECTIONS true'))
        self.engine.dispose()
