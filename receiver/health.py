"""Liveness and readiness probes."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from receiver.services import services

bp = Blueprint("health", __name__)
log = logging.getLogger("receiver.health")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(ok=True)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database and Redis answer: this instance can take pushes and queue their work."""
    svc = services()
    checks = {"database": True, "redis": True}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        checks["database"] = False
    try:
        svc.redis.ping()
    except RedisError:
        checks["redis"] = False
    ok = all(checks.values())
    if not ok:
        log.warning("health.not_ready %s", checks)
    return jsonify(ok=ok, **checks), 200 if ok else 503
