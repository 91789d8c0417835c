"""Slow clients: connections that dribble their body hold gunicorn's threads, not nginx's event loop.

nginx runs from deploy/nginx/receiver.conf, the file Compose and the docs use, filled in for a free
port and the stack's gunicorn; only its log paths move to the test's directory.
"""
from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, TOKENS, free_port, wait_for
from tests.faults.conftest import Driver, Stack

TEMPLATE = ROOT / "deploy" / "nginx" / "receiver.conf"
# /usr/sbin is not on every user's PATH.
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
SLOW = 50  # connections dribbling a body
PUSHES = 10  # pushes timed, with and without them


def nginx_config(tmp: Path, listen_port: int, upstream: str) -> Path:
    """nginx.conf for a non-daemon nginx of the test's own, around deploy/nginx/receiver.conf."""
    site = Template(TEMPLATE.read_text()).safe_substitute(RECEIVER_UPSTREAM=upstream, RECEIVER_NGINX_LISTEN=f"127.0.0.1:{listen_port}")
    assert "${RECEIVER_" not in site.split("upstream receiver_web", 1)[1], "a placeholder of the template was left unfilled"
    assert "/var/log/nginx/access.log" in site and "/var/log/nginx/error.log" in site
    (tmp / "receiver.conf").write_text(site.replace("/var/log/nginx/", f"{tmp}/nginx-"))
    temp_paths = " ".join(f"{kind}_temp_path {tmp}/nginx-{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(
        # As root, nginx's workers would run as nobody, who cannot enter pytest's private directory.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-main-error.log notice;\n"
        + "events { worker_connections 1024; }\n"
        + f"http {{\n  {temp_paths}\n  include {tmp}/receiver.conf;\n}}\n"
    )
    return conf


@pytest.fixture
def nginx(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A real nginx in front of the stack's gunicorn, configured by deploy/nginx/receiver.conf."""
    if NGINX is None:
        pytest.skip("no nginx binary (Debian: apt-get install nginx; .ci/run installs it)")
    port = free_port()
    conf = nginx_config(tmp_path, port, f"127.0.0.1:{stack.web_port}")
    log = open(tmp_path / "nginx.out", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "nginx-main-error.log")],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _ok(f"{url}/healthz"), timeout=20)
        assert proc.poll() is None, (tmp_path / "nginx.out").read_text() + (tmp_path / "nginx-main-error.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("nginx-*.log"))
    assert TOKENS["demo"] not in logs, "a callback token in nginx's logs"


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class SlowClients:
    """Connections that send a push's headers with a large Content-Length, then one body byte a second."""

    def __init__(self, port: int, count: int, gap: float = 0.0) -> None:
        self.socks: list[socket.socket] = []
        head = (f"POST /callbacks/demo?token={TOKENS['demo']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n{").encode()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head)
            self.socks.append(sock)
            time.sleep(gap)
        self.closing = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._dribble, name="slow-clients", daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        while not self.closing.wait(1.0):
            for sock in self.socks:
                try:
                    sock.sendall(b" ")
                    self.sent += 1
                except OSError:
                    pass

    def open(self) -> int:
        """How many are still connected: the server has neither answered nor closed them."""
        alive = 0
        for sock in self.socks:
            sock.setblocking(False)
            try:
                sock.recv(1, socket.MSG_PEEK)  # an answer (408, 400) or the end: not waiting any more
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return alive

    def close(self) -> None:
        self.closing.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def timed_pushes(url: str, driver: Driver, order_id: str, count: int, timeout: float = 5) -> list[tuple[int, float]]:
    """Signed pushes about `order_id`, each on a new connection as a provider sends them: (status, seconds)."""
    results = []
    for _ in range(count):
        headers, body = driver.provider.push(order_id, driver.provider.correct_price(order_id), signed=True)
        started = time.perf_counter()
        try:
            code = requests.post(f"{url}/callbacks/demo?token={TOKENS['demo']}", data=body, headers=headers, timeout=timeout).status_code
        except requests.Timeout:
            code = 0
        results.append((code, time.perf_counter() - started))
    return results


def _ms(results: list[tuple[int, float]]) -> str:
    return ", ".join(f"{code}:{seconds * 1000:.0f}" for code, seconds in results)


def test_slow_clients_behind_nginx_do_not_delay_pushes(stack: Stack, nginx: str, driver: Driver, capsys: Any) -> None:
    [order_id] = driver.provider.add_orders(1)
    nginx_port = int(nginx.rsplit(":", 1)[1])
    quiet = timed_pushes(nginx, driver, order_id, PUSHES)
    slow = SlowClients(nginx_port, SLOW)
    try:
        time.sleep(2.5)  # every connection has dribbled a couple of bytes
        pressed = timed_pushes(nginx, driver, order_id, PUSHES)
        still_open = slow.open()
    finally:
        slow.close()
    base, under = statistics.median(s for _, s in quiet), statistics.median(s for _, s in pressed)
    with capsys.disabled():
        print(f"\nslow clients via nginx: {SLOW} dribbling, {still_open} still open; push ms (status:ms) quiet [{_ms(quiet)}] "
              f"median {base * 1000:.0f}; with them [{_ms(pressed)}] median {under * 1000:.0f}")
    assert still_open == SLOW  # they were there all along: nginx waits on them (10 s between reads)
    assert [code for code, _ in quiet + pressed] == [200] * (2 * PUSHES)
    assert under - base < 0.1, f"median push {under * 1000:.0f} ms with {SLOW} slow clients, {base * 1000:.0f} ms without"
    assert max(s for _, s in pressed) < 1.0  # the providers' acknowledgement budget
    # A body over RECEIVER_MAX_BODY_BYTES: nginx answers 413 itself, gunicorn never sees it.
    big = requests.post(f"{nginx}/callbacks/demo?token={TOKENS['demo']}", data=b"x" * (1024 * 1024 + 1),
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert big.status_code == 413 and "nginx" in big.text
    assert '" 413 ' not in stack.log("web")


def test_the_same_slow_clients_straight_at_gunicorn_hold_every_push(stack: Stack, driver: Driver, capsys: Any) -> None:
    """What nginx is for: gunicorn's threads (2 workers x 2 here) each wait on one slow body."""
    [order_id] = driver.provider.add_orders(1)
    # Spaced out, so that each gunicorn worker accepts its share: arriving all at once, they can all
    # go to one worker, and the other would still answer (half the pushes, then, not all of them).
    slow = SlowClients(stack.web_port, SLOW, gap=0.02)
    try:
        time.sleep(2.5)
        pressed = timed_pushes(stack.url, driver, order_id, 4, timeout=2)
    finally:
        slow.close()
    with capsys.disabled():
        print(f"\nslow clients straight at gunicorn: {SLOW} dribbling; push (status:ms) [{_ms(pressed)}] (0 = no answer in 2 s)")
    assert all(code == 0 for code, _ in pressed), pressed
    # Once they hang up, gunicorn answers again.
    wait_for(lambda: timed_pushes(stack.url, driver, order_id, 1, timeout=3)[0][0] == 200, timeout=30)
