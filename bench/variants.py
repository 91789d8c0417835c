"""The receiver with one part of the callback path taken out, to price each part under gunicorn.

`python -m bench.run --variant NAME` serves `bench.variants:build(NAME)` in the receiver's place,
with the same gunicorn configuration and the same load, beside the same ceiling; the change in the
ratio is what that part costs. None of these is a way to run the service: each drops something a
push needs.

- no-publish: pushes are stored but no task is queued for them.
- no-store:   nothing is stored and nothing queued (the inbox INSERT answers "new" at once).
- no-parse:   no-store, and the body is not parsed (a fixed Push stands in for it).
- bare-wsgi:  the whole callback path (checks, parse, store, publish) as a plain WSGI function in
              front of Flask, without Flask's request and response objects, the blueprint's hooks
              (metrics, log context) or its error handlers: what Flask costs a push.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from flask import Flask
from werkzeug.datastructures import EnvironHeaders

from receiver import create_app, intake
from receiver.callbacks import ACK
from receiver.errors import PushRejected
from receiver.inbox import Stored
from receiver.providers import OrderRef, Push, RawPush, xportcn

VARIANTS = ("no-publish", "no-store", "no-parse", "bare-wsgi")
PREFIX = "/callbacks/"


def _no_store(*_: Any, **__: Any) -> Stored:
    return Stored(event_id=None, duplicate=False)  # no id: nothing to publish either


def _fixed_push(push: Push) -> Callable[..., Push]:
    return lambda self, source, raw: push


def _bare_wsgi(app: Flask) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The callback path without Flask (POST only, no 413 for a large body); all else goes to the app."""
    svc, publisher, flask_app = app.extensions["receiver"], app.extensions["publisher"], app.wsgi_app

    def callbacks(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX) or environ.get("REQUEST_METHOD") != "POST":
            return flask_app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        raw = RawPush(headers=EnvironHeaders(environ), body=body, content_type=environ.get("CONTENT_TYPE", ""))
        token = parse_qs(environ.get("QUERY_STRING", "")).get("token", [None])[0]
        try:
            push, stored = intake.accept(svc, path[len(PREFIX):], token, environ.get("REMOTE_ADDR"), raw)
        except PushRejected as err:
            start_response(f"{err.status} Refused", [("Content-Type", "application/json")])
            return [b'{"ok":false}\n']
        if push.actionable and stored.event_id is not None:
            publisher.put(stored.event_id)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ACK)))])
        return [ACK]

    return callbacks


def _replace(owner: Any, name: str, stand_in: Any) -> None:
    """Set `owner.name` to `stand_in`, or stop if the code no longer has it: a renamed part would
    otherwise stay in, and the variant would price nothing."""
    if not callable(getattr(owner, name, None)):
        raise SystemExit(f"bench.variants: {getattr(owner, '__name__', owner)!s}.{name} is gone; update bench/variants.py")
    setattr(owner, name, stand_in)


def build(variant: str) -> Flask:
    """The receiver app with `variant` applied."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if variant in ("no-store", "no-parse"):
        _replace(intake, "store_push", _no_store)
    if variant == "no-parse":
        push = Push("1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "price", "0" * 64, OrderRef("1688", "1"))
        _replace(xportcn.XportcnFamily, "parse_push", _fixed_push(push))
    app = create_app()
    if variant == "no-publish":
        _replace(app.extensions["publisher"], "put", lambda event_id: None)
    if variant == "bare-wsgi":
        app.wsgi_app = _bare_wsgi(app)  # type: ignore[method-assign]
    return app

