"""The long-lived objects one process shares: settings, database, Redis, HTTP session."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import redis
import requests
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from receiver.config import Settings
from receiver.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Built once per process by create_app; reached through `services()`."""

    settings: Settings
    engine: Engine = field(init=False)
    Session: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url, timeout=self.settings.db_timeout)
        self.Session = make_sessionmaker(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        """A client of the broker's Redis with short time-outs: the ingest path must not hang on it."""
        return redis.Redis.from_url(
            self.settings.broker_url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )

    @cached_property
    def http(self) -> requests.Session:
        """One pooled HTTP session for provider API calls."""
        session = requests.Session()
        session.headers["User-Agent"] = "sourcing-receiver/0.1"
        return session

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return ":".join((self.settings.namespace, *parts))


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["receiver"]
