"""The ceiling: the smallest Flask app that does what a push needs from HTTP, under the same gunicorn.

It reads the body and answers 200 with the receiver's JSON, nothing else. Whatever the receiver does
on top (token, signature, nonce, parse, INSERT, publish) is what the benchmark's ratio measures.
"""
from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
# The receiver's answer (receiver.callbacks.ACK), encoded once as it is there; not imported, so that
# the ceiling loads nothing of the receiver.
ACK = b'{"ok":true}\n'


@app.post("/callbacks/<source>")
def receive(source: str) -> Response:
    """Read the push and acknowledge it, as cheaply as Flask allows."""
    request.get_data(cache=False)
    return Response(ACK, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    """Readiness for the benchmark's start-up poll."""
    return jsonify(ok=True)
