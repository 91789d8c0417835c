"""Database engine and sessions, tuned per backend."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 5, timeout: float = 5.0) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout, others with a bounded pool.

    `timeout` bounds how long a statement waits for a lock (SQLite) or a connection: a push that
    cannot be stored by then gets 503, and the provider pushes it again later.
    """
    if url.startswith("sqlite"):
        # One connection per process: every transaction here is BEGIN IMMEDIATE (below), so SQLite runs
        # them one at a time whatever the pool holds. With more connections, threads of one process
        # queue in SQLite's busy handler, which sleeps 1, 2, 5 ... 100 ms between tries and starves
        # unlucky pushes, and connecting can fail on PRAGMA journal_mode ("database is locked"); on one
        # connection they queue in the pool and are woken as soon as it is free (docs/benchmarks.md).
        engine = create_engine(
            url,
            connect_args={"timeout": timeout, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
            pool_timeout=timeout,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Take transaction control from pysqlite, which would BEGIN only at the first write and
            # so let a read-then-write (our upsert) lose an update to a concurrent worker.
            dbapi_conn.isolation_level = None
            # WAL lets the web process write while workers read; NORMAL sync is durable in WAL mode
            # against process crashes, which is what "stored before 200" needs on one machine.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # IMMEDIATE takes the write lock up front: SQLite's stand-in for SELECT ... FOR UPDATE.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args={"connect_timeout": max(1, int(timeout))} if url.startswith("postgresql") else {},
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The session factory every unit of work uses."""
    return sessionmaker(engine, expire_on_commit=False)
