"""Database engine and sessions, tuned per backend."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Executable, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from receiver.sqlite import sqlite_engine, sqlite_read_engine


def make_engine(url: str, pool_size: int = 5, timeout: float = 5.0, pre_ping: bool = True) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout, others with a bounded pool.

    `timeout` bounds how long a statement waits for a lock (SQLite) or a connection: a push that
    cannot be stored by then gets 503, and the provider pushes it again later. `pre_ping`: each
    checkout first asks the server whether the connection still works (a round trip).
    """
    if url.startswith("sqlite"):
        return sqlite_engine(url, timeout)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=timeout,
        connect_args={"connect_timeout": max(1, int(timeout))} if url.startswith("postgresql") else {},
    )


def make_read_engine(url: str, writer: Engine, timeout: float = 5.0) -> Engine:
    """The engine for reads that must never make a push wait: SQLite's reads go around the writer's
    lock and pool; other databases read under MVCC, so the writer's engine serves."""
    return sqlite_read_engine(url, timeout) if url.startswith("sqlite") else writer


def make_inbox_engine(url: str, writer: Engine, timeout: float = 5.0) -> Engine:
    """The engine of the inbox's INSERT: on a server, a pool without the pre-ping, which was half of a
    push's round trips; `receiver.inbox.store_push` tries again on a lost connection instead. SQLite
    has no server to lose and one writer's connection and lock per process: the writer serves."""
    return writer if url.startswith("sqlite") else make_engine(url, timeout=timeout, pre_ping=False)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The session factory every unit of work uses."""
    return sessionmaker(engine, expire_on_commit=False)


# --- the hot path: one statement or two in a transaction, on the driver -----------------------------
# Around one INSERT, SQLAlchemy's Connection, Transaction, events and result cost as much CPU as
# SQLite's own work (docs/benchmarks.md). The inbox compiles its statements once and runs them here;
# everything else goes through SQLAlchemy as usual.


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled once for an engine's driver, with its parameters' bind processors."""

    sql: str
    positions: tuple[str, ...] | None  # a positional paramstyle's (SQLite's qmark) parameter order
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def compile(cls, engine: Engine, stmt: Executable, names: Sequence[str] | None = None) -> DriverStatement:
        """Compile `stmt` (an INSERT with parameters for the columns `names`, or bound parameters)."""
        compiled = stmt.compile(dialect=engine.dialect, column_keys=list(names) if names else None)  # type: ignore[attr-defined]
        processors = {
            name: proc
            for name, bind in compiled.binds.items()
            # The dialect's own type (SQLite's DATETIME writes its own text form, as everywhere else).
            if (proc := bind.type.dialect_impl(engine.dialect).bind_processor(engine.dialect))
        }
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        return cls(compiled.string, positions, processors)

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """The driver's parameters for `values`."""
        row = {**values, **{name: proc(values[name]) for name, proc in self.processors.items() if name in values}}
        return [row[name] for name in self.positions] if self.positions is not None else row


@contextmanager
def driver_cursor(engine: Engine, autocommit: bool = False) -> Iterator[Any]:
    """A driver cursor in a transaction on a pooled connection, committed when the block ends.

    `autocommit`: the block runs a single statement, which is then its own transaction, committed
    when it returns. On PostgreSQL that is one round trip instead of three (BEGIN, the statement,
    COMMIT). On SQLite the writer's flock is still taken first, but SQLite's write lock is then held
    only inside that one call, which runs without the GIL (an INSERT without RETURNING): with BEGIN
    IMMEDIATE the lock was held across five returns to Python, each waiting for the GIL while
    every other writer waited for the lock.
    An exception rolls the transaction back: the pool does so for every connection returned to it.
    Driver errors are raised as SQLAlchemy's, as the rest of the code expects them; a lost connection
    (a restarted server, an ended backend) as one with `connection_invalidated` set.
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    connection = None
    switched = False
    try:
        connection = engine.raw_connection()
        driver = connection.dbapi_connection
        if hasattr(driver, "begin_immediate"):  # receiver.sqlite's
            driver.lock_writer() if autocommit else driver.begin_immediate()  # type: ignore[union-attr]
        elif autocommit:
            driver.autocommit = switched = True  # type: ignore[attr-defined]
        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
        connection.commit()
    except dbapi_error as err:
        lost = connection is not None and engine.dialect.is_disconnect(err, connection.dbapi_connection, None)
        if lost and connection is not None:
            # As SQLAlchemy's own Connection does: every pooled connection older than this one is
            # replaced at its next checkout, since a restarted server lost them all.
            engine.pool._invalidate(connection, err)
        raise DBAPIError.instance(None, None, err, dbapi_error, connection_invalidated=lost) from err
    finally:
        if connection is not None:
            if switched and connection.is_valid:
                try:
                    connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]
                except dbapi_error:  # a broken connection: never back into the pool half set
                    connection.invalidate()
            connection.close()
