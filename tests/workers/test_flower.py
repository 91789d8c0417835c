"""Flower, as `make run` and deploy/ start it: basic auth from the environment, our tasks visible."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_for
from tests.workers.test_refetch import ALIBABA, send

AUTH = ("admin", "flower-test-password")


@pytest.fixture
def flower(environ):  # type: ignore[no-untyped-def]
    """A Flower process on the suite's broker, password from FLOWER_BASIC_AUTH."""
    port = free_port()
    env = {**os.environ, **environ, "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "flower", "--address=127.0.0.1", f"--port={port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code in (200, 401)
    except requests.RequestException:
        return False


def test_flower_wants_the_password_and_shows_our_tasks(client, sandbox, worker, flower):
    assert requests.get(flower, timeout=5).status_code == 401
    assert requests.get(flower, auth=("admin", "wrong"), timeout=5).status_code == 401
    provider = sandbox.providers["xportcn"]

    def seen() -> bool:
        # Flower listens for task events only once it is connected: keep the pushes coming until then.
        send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -1))
        tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
        return {t["name"] for t in tasks.values()} >= {"workers.tasks.process_events", "workers.tasks.refetch_order"}

    assert wait_for(seen, timeout=30, interval=0.5)
