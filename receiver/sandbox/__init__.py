"""A loopback provider: a real HTTP server that checks our signatures as the provider documents them,
serves orders seeded from the provider docs' examples, and can be told to misbehave.

The test suite's loopback provider and the `receiver sandbox` command are this module.
"""
from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

log = logging.getLogger("receiver.sandbox")

FAULT_MODES = ("http500", "http429", "timeout", "code")
CONTROL = "_control"
# What `receiver simulate <kind>` asks a provider to do to an order.
CHANGES = {"price": "correct_price", "status": "step_status", "refund": "refund"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; raise TimeoutError naming
    `what` (and what `explain` finds then) after `timeout` seconds. A predicate that raises OSError
    (a server not listening yet, a request refused) counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s" + (f": {explain()}" if explain else ""))
        time.sleep(interval)


class FakeProvider(Protocol):
    """One provider family's side of the sandbox."""

    family: str

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one API request: (HTTP status, JSON body)."""

    def error(self, code: int, msg: str) -> dict[str, Any]:
        """The provider's own shape for an error answer."""

    def order_ids(self) -> list[str]:
        """The ids of the orders it holds."""

    def order_of_request(self, path: str, body: bytes) -> str | None:
        """Which order an API request asks for, when it names one."""

    def correct_price(self, order_id: str, delta: int = -100) -> str:
        """Correct an order's price; return the message type of the push it causes."""

    def step_status(self, order_id: str) -> str:
        """Move an order one status forward; return the push's message type."""

    def refund(self, order_id: str, amount: int = 500) -> str:
        """Refund part of an order; return the push's message type."""

    shapes: tuple[str, ...]  # the push body shapes it can send; the first is its usual one

    def push(
        self, order_id: str, message_type: str, signed: bool = True, *, shape: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The push the provider sends about an order, in one of its `shapes`: (headers, body)."""

    def redeliver(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """The same push sent again, as the provider's retry would send it."""


@dataclass
class Faults:
    """Switches to rehearse a misbehaving provider."""

    latency: float = 0.0  # seconds added to every answer
    fail_rate: float = 0.0  # share of requests answered with `fail_mode`
    fail_mode: str = "http500"
    queued: list[str] = field(default_factory=list)  # the next requests' faults, in order
    broken_orders: dict[str, tuple[int, str]] = field(default_factory=dict)  # order id -> (code, msg)
    timeout_delay: float = 3.0

    def next_fault(self) -> str | None:
        if self.queued:
            return self.queued.pop(0)
        if self.fail_rate and random.random() < self.fail_rate:
            return self.fail_mode
        return None


class Sandbox:
    """The server: mounts fake providers under path prefixes, counts calls, applies faults."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.providers: dict[str, FakeProvider] = {}
        self.faults = Faults()
        self.calls: list[tuple[str, str | None, int]] = []  # (path, order id, HTTP status)
        self.lock = threading.RLock()
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes: with Nagle's algorithm the body waits
            # for the client's delayed ACK of the headers, 40 ms on Linux, on every call.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                # A GET's query reaches the provider as a JSON body: providers read parameters one way.
                path, _, query = self.path.partition("?")
                self.answer(*sandbox.dispatch(path, self.headers_by_name(), json.dumps(dict(parse_qsl(query))).encode()))

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                self.answer(*sandbox.dispatch(self.path, self.headers_by_name(), body))

            def headers_by_name(self) -> Mapping[str, str]:
                # An email Message, which providers read as a mapping: by name, in any case.
                return cast("Mapping[str, str]", self.headers)

            def answer(self, status: int, payload: dict[str, Any]) -> None:
                if status == 0:  # a simulated time-out: answer too late
                    time.sleep(sandbox.faults.timeout_delay)
                    status, payload = 504, {"error": "timeout"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("sandbox " + fmt, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_port}"

    def mount(self, prefix: str, provider: FakeProvider) -> FakeProvider:
        """Serve `provider` under `/<prefix>`; its sources use `<url>/<prefix>` as base URL."""
        self.providers[prefix.strip("/")] = provider
        return provider

    def base_url(self, prefix: str) -> str:
        """The base URL a source configures to talk to the provider mounted at `prefix`."""
        return f"{self.url}/{prefix.strip('/')}"

    def dispatch(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Route one request to its provider, after the fault switches had their say."""
        prefix, _, rest = path.lstrip("/").partition("/")
        if prefix == CONTROL:
            return self.control(rest, body)
        provider = self.providers.get(prefix)
        if provider is None:
            return 404, {"error": f"nothing mounted at /{prefix}"}
        rest = "/" + rest.split("?", 1)[0]
        with self.lock:
            fault = self.faults.next_fault()
            broken = self.faults.broken_orders
            order_id = provider.order_of_request(rest, body)
        if self.faults.latency:
            time.sleep(self.faults.latency)
        if fault == "timeout":
            result: tuple[int, dict[str, Any]] = (0, {})
        elif fault == "http500":
            result = 500, {"error": "internal error"}
        elif fault == "http429":
            result = 429, {"error": "too many requests"}
        elif fault == "code":
            result = 200, provider.error(500, "system busy")
        elif order_id is not None and order_id in broken:
            result = 200, provider.error(*broken[order_id])
        else:
            with self.lock:
                result = provider.handle(rest, headers, body)
        with self.lock:
            self.calls.append((rest, order_id, result[0]))
        return result

    def control(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The sandbox's own API, for `receiver simulate` and fault rehearsals in another process."""
        try:
            args = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if path == "faults":
            with self.lock:
                for key in ("latency", "fail_rate", "fail_mode", "queued", "timeout_delay"):
                    if key in args:
                        setattr(self.faults, key, args[key])
                for order_id, error in (args.get("broken_orders") or {}).items():
                    if error is None:
                        self.faults.broken_orders.pop(order_id, None)
                    else:
                        self.faults.broken_orders[order_id] = (int(error[0]), str(error[1]))
            return 200, {"ok": True}
        prefix, _, action = path.partition("/")
        provider = self.providers.get(prefix)
        if provider is None:
            return 404, {"error": f"nothing mounted at /{prefix}"}
        with self.lock:
            if action == "orders":
                return 200, {"orders": provider.order_ids()}
            if action == "change":
                kind = args.get("kind")
                if kind not in CHANGES:
                    return 400, {"error": f"kind must be one of {', '.join(CHANGES)}"}
                order_id = args.get("order_id") or provider.order_ids()[0]
                if order_id not in provider.order_ids():
                    return 404, {"error": f"no order {order_id}"}
                shape = args.get("shape")
                if shape is not None and shape not in provider.shapes:
                    return 400, {"error": f"shape must be one of {', '.join(provider.shapes)}"}
                message_type = getattr(provider, CHANGES[kind])(order_id)
                try:
                    headers, push = provider.push(order_id, message_type, shape=shape)
                except ValueError as err:  # a shape this order's platform does not push
                    return 400, {"error": str(err)}
                return 200, {"order_id": order_id, "message_type": message_type, "headers": headers, "body": push.decode()}
            if action == "redeliver":
                headers, push = provider.redeliver(args.get("headers") or {}, str(args.get("body", "")).encode())
                return 200, {"headers": headers, "body": push.decode()}
        return 404, {"error": f"no control action {action!r}"}

    def fetches(self, order_id: str | None = None) -> int:
        """How many API calls asked for `order_id` (or for anything)."""
        with self.lock:
            return sum(1 for _, oid, _ in self.calls if order_id is None or oid == order_id)

    def start(self) -> Sandbox:
        """Serve in a daemon thread."""
        self.thread = threading.Thread(target=self.server.serve_forever, name="sandbox", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
