"""Nothing lost, nothing done twice: the real processes, broken on purpose while pushes arrive."""
from __future__ import annotations

import signal
import threading
import time

import redis
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from receiver.cli import main
from tests.conftest import TOKENS, wait_for
from tests.faults.conftest import Driver, settle, summarise

ORDERS, CHANGES = 30, 10  # 300 distinct pushes, about 400 deliveries with the duplicates


def finish(app, stack, driver: Driver, settings, name: str, pushes):  # type: ignore[no-untyped-def]
    """The provider retries what got no 200; then wait for the workers and compare with the truth."""
    driver.retry_owed()
    return summarise(name, app, driver, settings, pushes, settle(app, stack))


def check(summary, capsys, dead: int = 0) -> None:  # type: ignore[no-untyped-def]
    with capsys.disabled():
        print("\n" + summary.line())
    # Lost is what we acknowledged and do not hold; stuck, what waits for a worker past the time the
    # sweeper needs to rescue it (late is fine: settled_in says how late); owed, what we never took.
    assert summary.lost == 0
    assert summary.stuck == 0, f"still waiting after {summary.settled.seconds:.0f}s: {summary.settled.stuck}\n{summary.settled.detail}"
    assert summary.owed == 0
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
    check(finish(app, stack, driver, settings, "redis-stopped", pushes), capsys)


def test_worker_killed_mid_task_then_restarted(app, stack, driver, sandbox, settings, capsys):
    sandbox.faults.latency = 0.05  # so that tasks are in flight when the kill comes
    pushes = driver.make_pushes(ORDERS, CHANGES)
    sender = threading.Thread(target=driver.deliver, args=(pushes,))
    sender.start()
    wait_for(lambda: sandbox.fetches() >= 10, timeout=30)
    stack.stop(stack.worker_name(), signal.SIGKILL)
    killed_at = time.monotonic()
    # What the kill left behind: messages the dead worker had taken and will never acknowledge (Redis
    # gives them back only after the visibility timeout, an hour), and per-order re-fetch claims. A
    # claim whose task died with the worker holds its order's events back until it expires
    # (CLAIM_TTL); settle()'s deadline allows for that, so such events count as late, not stuck.
    broker = redis.Redis(port=stack.redis_port)
    held, claims = broker.hlen("unacked"), sum(1 for _ in broker.scan_iter(f"{settings.namespace}:pending:*"))
    sender.join()
    sandbox.faults.latency = 0
    stack.start_worker()
    summary = finish(app, stack, driver, settings, "worker-killed", pushes)
    with capsys.disabled():
        print(f"\nworker-killed: the dead worker held {held} message(s); {claims} order claim(s) open at the kill; "
              f"every event final {time.monotonic() - killed_at:.1f}s after the kill")
    check(summary, capsys)


def test_provider_fails_for_a_while_then_recovers(app, stack, driver, sandbox, settings, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    sandbox.faults.fail_rate, sandbox.faults.timeout_delay = 1.0, 1.5  # every call fails, one way...
    driver.deliver(pushes[: len(pushes) // 3])
    for mode in ("http500", "http429", "timeout"):  # ...then another, while retries come in
        sandbox.faults.fail_mode = mode
        time.sleep(0.7)
    sandbox.faults.fail_rate = 0.0
    driver.deliver(pushes[len(pushes) // 3 :])
    summary = finish(app, stack, driver, settings, "provider-flaky", pushes)
    assert {500, 429} <= {status for _, _, status in sandbox.calls}
    check(summary, capsys)


def test_permanent_error_for_one_order_is_dead_alerted_and_replayable(app, stack, driver, sandbox, settings, environ, monkeypatch, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    broken = driver.orders[0]
    sandbox.faults.broken_orders[broken] = (1001, "order frozen by risk control")
    driver.deliver(pushes)
    summary = finish(app, stack, driver, settings, "permanent-error", pushes)
    with capsys.disabled():
        print("\n" + summary.line())
    assert summary.dead >= 1 and summary.mismatched == [broken] and summary.lost == summary.owed == summary.stuck == 0
    assert "alert.dead_letter" in "".join(stack.log(n) for n in stack.procs if n.startswith("worker"))
    del sandbox.faults.broken_orders[broken]
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RECEIVER_BROKER_URL", stack.env["RECEIVER_BROKER_URL"])
    result = CliRunner().invoke(main, ["events", "replay", "--status", "dead", "--source", "demo"])
    assert result.exit_code == 0, result.output
    check(summarise("permanent-error-replayed", app, driver, settings, pushes, settle(app, stack)), capsys)


def test_database_unavailable_for_a_moment(app, stack, driver, settings, database_url, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    third = len(pushes) // 3
    driver.deliver(pushes[:third])
    with database_outage(database_url):
        driver.deliver(pushes[third : 2 * third])
        assert driver.codes[503] > 0 and driver.owed  # refused, so the provider retries them
    driver.deliver(pushes[2 * third :])
    # finish(): the provider's retries half an hour later
    check(finish(app, stack, driver, settings, "database-down", pushes), capsys)


def test_same_push_five_times_and_old_after_new(app, stack, driver, settings, capsys):
    pushes = driver.make_pushes(ORDERS, CHANGES)
    for p in pushes:
        p.copies = 5 if p.order_id in driver.orders[:5] else p.copies
    driver.deliver(list(reversed(pushes)))  # every old push after the newer ones
    check(finish(app, stack, driver, settings, "duplicates-and-reordering", pushes), capsys)


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


def test_the_summary_tells_a_lost_push_from_one_the_provider_still_owes(app, sandbox, settings, client):
    """Lost means answered 200 and not in the inbox; a push never answered 200 is owed, not lost."""
    driver = Driver(None, sandbox)  # type: ignore[arg-type] - no stack: the pushes go through the test client
    kept, dropped, refused = driver.make_pushes(3, 1)
    assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", data=kept.body, headers=kept.headers).status_code == 200
    kept.acked = True
    dropped.acked = True  # as if we had answered 200 and then dropped it
    driver.owed = [refused]
    summary = summarise("accounting", app, driver, settings, [kept, dropped, refused])
    assert (summary.events, summary.lost, summary.owed) == (1, 1, 1)
