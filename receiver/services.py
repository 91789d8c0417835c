"""The long-lived objects one process shares: settings, database, Redis, HTTP session."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

import redis
import requests
from flask import current_app
from redis.sentinel import Sentinel
from sqlalchemy import Engine, orm
from sqlalchemy.orm import sessionmaker

from receiver.config import Settings
from receiver.db import make_engine, make_inbox_engine, make_read_engine, make_sessionmaker


@dataclass
class Services:
    """Built once per process by create_app; reached through `services()`."""

    settings: Settings
    engine: Engine = field(init=False)
    Session: sessionmaker[orm.Session] = field(init=False)
    read_engine: Engine = field(init=False)  # for pages, the API and metrics: never holds up a push
    ReadSession: sessionmaker[orm.Session] = field(init=False)
    inbox_engine: Engine = field(init=False)  # the callback's INSERT alone (receiver.db.make_inbox_engine)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url, timeout=self.settings.db_timeout)
        self.Session = make_sessionmaker(self.engine)
        self.read_engine = make_read_engine(self.settings.database_url, self.engine, timeout=self.settings.db_timeout)
        self.ReadSession = make_sessionmaker(self.read_engine)
        self.inbox_engine = make_inbox_engine(self.settings.database_url, self.engine, timeout=self.settings.db_timeout)

    @cached_property
    def redis(self) -> redis.Redis:
        """A client of the broker's Redis with short time-outs: the ingest path must not hang on it.
        A `sentinel://` broker URL (Celery's form) gives a client of the master Sentinel names."""
        timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        url = self.settings.broker_url
        if not url.startswith("sentinel://"):
            return redis.Redis.from_url(url, health_check_interval=30, **timeouts)
        parts = [urlsplit(u if u.startswith("sentinel://") else f"sentinel://{u}") for u in url.split(";")]
        sentinel = Sentinel([(p.hostname or "127.0.0.1", p.port or 26379) for p in parts], **timeouts)
        db = int(parts[-1].path.strip("/") or 0)
        return sentinel.master_for(self.settings.redis_master_name, db=db, password=parts[0].password, **timeouts)

    @cached_property
    def http(self) -> requests.Session:
        """One pooled HTTP session for provider API calls."""
        session = requests.Session()
        session.headers["User-Agent"] = "sourcing-receiver/0.1"
        return session

    def dispose(self) -> None:
        """Close the pooled database connections of every engine."""
        for engine in {self.engine, self.read_engine, self.inbox_engine}:
            engine.dispose()

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return ":".join((self.settings.namespace, *parts))


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["receiver"]
