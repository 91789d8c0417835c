"""Liveness and readiness probes."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from receiver.services import services

bp = Blueprint("health", __name__)
log = logging.getLogger("receiver.health")


@bp.app_errorhandler(HTTPException)
def http_error(err: HTTPException) -> tuple[Response, int]:
    """JSON for what no blueprint answers (an unknown path, a wrong method)."""
    return jsonify(ok=False, error=err.description), err.code or 500


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
