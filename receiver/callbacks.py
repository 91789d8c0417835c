"""POST /callbacks/<source>: where providers push."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from receiver import logs, metrics
from receiver.errors import MalformedPush, PushRejected
from receiver.intake import accept
from receiver.providers import RawPush
from receiver.services import services

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")
log = logging.getLogger("receiver.callbacks")
# The 200 body for every accepted push (new or duplicate), as jsonify(ok=True) writes it, encoded once.
ACK = b'{"ok":true}\n'
metrics.observe_callbacks(bp)


@bp.post("/", defaults={"source": ""})  # so that a missing source gets this blueprint's JSON 404
@bp.post("/<source>")
def receive(source: str) -> Response:
    """Verify, validate and store a push, queue its processing, and only then say 200."""
    raw = RawPush(headers=request.headers, body=_body(), content_type=request.content_type or "")
    push, stored = accept(services(), source, request.args.get("token"), request.remote_addr, raw)
    g.push_kind = push.kind  # for the pushes counter
    logs.bind(event_id=stored.event_id, order_id=push.order.order_id if push.order else None)
    if stored.duplicate:
        log.info("callback.duplicate source=%s type=%s", source, push.message_type)
    elif push.actionable and stored.event_id is not None:
        current_app.extensions["publisher"].put(stored.event_id)
    return Response(ACK, mimetype="application/json")


def _body() -> bytes:
    """The request body, or 413 when it is larger than the limit.

    With a Content-Length, Werkzeug refuses a large body before reading it. A chunked body has none,
    and Werkzeug's limited stream stops at the limit without a word, so a longer one would be stored
    cut: whether anything follows is asked of the server's own stream.
    """
    body = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(body) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return body


@bp.before_request
def bind_source() -> None:
    # Only a configured name: the path is the sender's to choose.
    name = (request.view_args or {}).get("source")
    logs.bind(source=name if name in services().settings.sources else None)


@bp.teardown_request
def unbind(_: BaseException | None) -> None:
    logs.clear()


def _refused(status: int) -> str:
    """The source a refused push was for; counted for the push_rejections alert when configured."""
    source = request.view_args.get("source", "") if request.view_args else ""
    if source not in services().settings.sources:
        return logs.loggable(source)  # the sender's choice of name: no forged lines, no 8 KB ones
    if status < 500:
        current_app.extensions["rejections"].note(source)
    return source


@bp.errorhandler(PushRejected)
def rejected(err: PushRejected) -> tuple[Response, int]:
    log.warning("%s source=%s reason=%s", err.event, _refused(err.status), err.message)
    body = {"ok": False, "error": err.message}
    if isinstance(err, MalformedPush):
        body["field"] = err.field
    return jsonify(body), err.status


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> tuple[Response, int]:
    code = err.code or 500
    log.warning("callback.http_%s source=%s", code, _refused(code))
    return jsonify(ok=False, error=err.description), code
