"""deploy/gunicorn.conf.py's logger: no callback token reaches gunicorn's error or access log."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOKENS, free_port, wait_for

SECRET = "SECRET-123"


def _send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


@pytest.fixture
def gunicorn(environ, tmp_path):  # type: ignore[no-untyped-def]
    """The real app under gunicorn with deploy/gunicorn.conf.py; the access log shows whole request
    lines (%(r)s), as an operator may configure it, to prove the masking rather than the format."""
    port, log = free_port(), tmp_path / "gunicorn.log"
    env = {**os.environ, **environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"), "XDG_RUNTIME_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
           "--access-logformat", '%(h)s "%(r)s" %(s)s "%(f)s"', "wsgi:app"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"200" in _send(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                 if b"Booting worker" in log.read_bytes() else False, timeout=30)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tokens_in_refused_and_served_request_lines_are_masked(gunicorn):
    port, log = gunicorn
    # Request lines gunicorn refuses: it logs the whole line, query string included, when it cannot
    # split it (no version, two spaces, a control character), else the part it choked on.
    for line in (f"GET /callbacks/demo?token={SECRET} HTTP/1.1 garbage", f"GET /callbacks/demo?token={SECRET}",
                 f"GET  /callbacks/demo?token={SECRET} HTTP/1.1", f"GET /callbacks/demo?token={SECRET}\x01 HTTP/1.1"):
        assert _send(port, f"{line}\r\nHost: x\r\n\r\n".encode()).startswith(b"HTTP/1.1 400")
    # A served push with the real callback token in the query, and a Referer carrying another.
    token = TOKENS["demo"]
    served = _send(port, (f"POST /callbacks/demo?token={token}&x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          f"Referer: https://example.com/?access_token={SECRET}\r\nContent-Length: 2\r\n"
                          "Connection: close\r\n\r\n{}").encode())
    assert served.startswith(b"HTTP/1.1 ")
    wait_for(lambda: "/callbacks/demo?token=***&x=1" in log.read_text(), timeout=10, explain=log.read_text)
    text = log.read_text()
    assert SECRET not in text and token not in text, text
    assert "Invalid HTTP request line: 'GET /callbacks/demo?token=***'" in text, text
    assert "Invalid HTTP request line: 'GET  /callbacks/demo?token=*** HTTP/1.1'" in text, text
    assert "access_token=***" in text, text


def test_the_masking_pattern_keeps_what_is_not_a_token():
    config: dict[str, object] = {}
    exec(compile(Path(ROOT / "deploy" / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), config)  # noqa: S102
    pattern = config["SECRET_IN_URL"]
    masked = pattern.sub(r"\1***", "GET /callbacks/a?token=abc&page=2 'x?Token=def' /x?tokens=1 callback_token=ghi;")  # type: ignore[attr-defined]
    assert masked == "GET /callbacks/a?token=***&page=2 'x?Token=***' /x?tokens=1 callback_token=***;"
