"""SQLite as a store several processes write at once: WAL, one writer at a time, checkpoints aside.

Every transaction here is BEGIN IMMEDIATE (SQLite's stand-in for SELECT ... FOR UPDATE), so SQLite
runs them one at a time across all processes. Two things made that slow under gunicorn, and are
changed here (docs/benchmarks.md has the figures):

- A process that found the write lock taken waited in SQLite's busy handler, which sleeps 1, 2, 5,
  10 ... ms between tries, while a push holds the lock for about 0.1 ms: with two gunicorn processes
  one slept most of the time, and two took fewer pushes than one. Transactions now also take an
  flock on a file beside the database, which a waiting process polls in steps of 0.05 to 1 ms.
- The commit that filled the WAL to 1,000 pages ran the checkpoint, fsync included, while its
  process's only connection was held: every push of that process waited 50-400 ms. Checkpoints
  now run on a connection of their own, in a thread, outside any transaction.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
CHECKPOINT_INTERVAL = 0.5  # seconds; at 1,000 pushes/s the WAL grows by about 15 MB between two


class WriterLockedConnection(sqlite3.Connection):
    """A connection whose transactions hold an flock beside the database as long as SQLite's write lock."""

    lock_fd: int | None = None
    lock_timeout: float = 5.0

    def lock_writer(self) -> None:
        """Take the flock: the next statement may write, and commits on its own (autocommit mode)."""
        if self.lock_fd is not None:
            fd = self.lock_fd
            until_unlocked(lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB), self.lock_timeout)

    def begin_immediate(self) -> None:
        """Take the flock, then SQLite's write lock."""
        self.lock_writer()
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise

    def commit(self) -> None:
        """Commit, then let the next writer in."""
        try:
            super().commit()
        finally:
            self._unlock()

    def rollback(self) -> None:
        """Roll back, then let the next writer in."""
        try:
            super().rollback()
        finally:
            self._unlock()

    def close(self) -> None:
        """Close the connection and its lock file."""
        try:
            super().close()
        finally:
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None

    def _unlock(self) -> None:
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)


def until_unlocked(attempt: Callable[[], object], timeout: float) -> None:
    """Run `attempt` until it stops meeting a lock, polling in 0.05-1 ms steps; after `timeout` seconds
    fail as SQLite does ("database is locked")."""
    delay, deadline = 0.00005, time.monotonic() + timeout
    while True:
        try:
            attempt()
            return
        except (BlockingIOError, sqlite3.OperationalError) as err:
            if isinstance(err, sqlite3.OperationalError) and "database is locked" not in str(err):
                raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.001)


class Checkpointer:
    """One thread per process and database file that checkpoints the WAL every CHECKPOINT_INTERVAL."""

    _running: dict[tuple[int, str], Checkpointer] = {}
    _lock = threading.Lock()

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    @classmethod
    def ensure(cls, path: str, timeout: float) -> None:
        """Start this process's checkpointer for `path` unless it runs already (gunicorn and Celery fork)."""
        key = (os.getpid(), path)
        if key in cls._running:
            return
        with cls._lock:
            if key not in cls._running:
                cls._running[key] = checkpointer = cls(path, timeout)
                threading.Thread(target=checkpointer._run, name="sqlite-checkpoint", daemon=True).start()

    def _run(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            while os.path.exists(self.path):  # a database deleted (a test's) needs no more checkpoints
                time.sleep(CHECKPOINT_INTERVAL)
                try:
                    # PASSIVE: copy what no reader still needs, never wait for or block a writer.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as err:
                    log.warning("sqlite.checkpoint_failed error=%s", err)
        except sqlite3.Error as err:
            log.warning("sqlite.checkpointer_stopped error=%s", err)
        finally:
            if conn is not None:
                conn.close()
            with self._lock:
                self._running.pop((os.getpid(), self.path), None)


def sqlite_engine(url: str, timeout: float) -> Engine:
    """An engine for a SQLite URL: WAL, BEGIN IMMEDIATE, one pooled connection, the writer flock."""
    database = make_url(url).database or ""
    on_disk = database not in ("", ":memory:") and "mode=memory" not in url
    # One connection per process: SQLite runs our transactions one at a time whatever the pool holds,
    # and threads of one process queue in the pool, which wakes the next as soon as it is free.
    engine = create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False, "factory": WriterLockedConnection},
        pool_size=1,
        max_overflow=0,
        pool_timeout=timeout,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: WriterLockedConnection, _record: Any) -> None:
        # Take transaction control from pysqlite, which would BEGIN only at the first write and
        # so let a read-then-write (our upsert) lose an update to a concurrent worker.
        dbapi_conn.isolation_level = None
        # WAL lets the web process write while workers read; NORMAL sync is durable in WAL mode
        # against process crashes, which is what "stored before 200" needs on one machine.
        def configure() -> None:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={int(timeout * 1000)}", "foreign_keys=ON"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        # A new connection's set-up can get "database is locked" at once, without the busy handler,
        # while other processes start too (seen under load at gunicorn's start, a 503 to the
        # provider): tried again, as the busy handler would, until the timeout.
        until_unlocked(configure, timeout)
        if on_disk:
            # Read-only is enough for flock, whoever created the file (a CLI run as another user).
            dbapi_conn.lock_fd = os.open(f"{database}-writer.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            dbapi_conn.lock_timeout = timeout
            # The Checkpointer's job; the automatic one, at 40 MB of WAL instead of 4, only bounds the
            # WAL should the Checkpointer not run.
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=10000")
            Checkpointer.ensure(database, timeout)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        try:
            conn.connection.dbapi_connection.begin_immediate()
        except sqlite3.Error as err:  # as SQLAlchemy would have raised it: callers catch SQLAlchemyError
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), err, sqlite3.Error) from err

    return engine


def sqlite_read_engine(url: str, timeout: float) -> Engine:
    """An engine for reads only: no BEGIN IMMEDIATE, no writer flock, a pool of its own.

    In WAL mode a reader sees the last commit and neither waits for a writer nor holds one up; only
    the writer engine's single connection and lock serialise writes. So /metrics, the admin pages
    and the API never make a push wait, whatever their queries cost.
    """
    engine = create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False},
        pool_size=2,
        max_overflow=2,
        pool_timeout=timeout,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # each SELECT is its own read transaction: nothing held open
        pragmas = ("query_only=ON", f"busy_timeout={int(timeout * 1000)}")
        until_unlocked(lambda: [dbapi_conn.execute(f"PRAGMA {p}") for p in pragmas], timeout)

    return engine
