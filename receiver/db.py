"""Database engine and sessions, tuned per backend."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from receiver.sqlite import sqlite_engine


def make_engine(url: str, pool_size: int = 5, timeout: float = 5.0) -> Engine:
    """An engine for `url`: SQLite in WAL mode with a busy timeout, others with a bounded pool.

    `timeout` bounds how long a statement waits for a lock (SQLite) or a connection: a push that
    cannot be stored by then gets 503, and the provider pushes it again later.
    """
    if url.startswith("sqlite"):
        return sqlite_engine(url, timeout)
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
