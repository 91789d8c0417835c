"""deploy/keep-running.sh: what `make run` runs the worker under, so that honcho keeps the rest up."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "keep-running.sh"


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_command_that_exits_on_its_own_is_started_again_and_terminating_the_group_stops_both(tmp_path):
    starts = tmp_path / "starts"
    # The first run exits as a crashed worker would; the second stays up until it is told to stop.
    command = f'echo started >> {starts}; [ "$(wc -l < {starts})" -ge 2 ] && exec sleep 30; exit 3'
    # As honcho starts a Procfile line: a session of its own, signalled as a whole group.
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen([str(SCRIPT), "sh", "-c", command], start_new_session=True, stderr=stderr)
    try:
        assert wait_until(lambda: starts.exists() and len(starts.read_text().splitlines()) == 2, timeout=10)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "exited with status 3; starting it again" in (tmp_path / "stderr").read_text()
        # Nothing of the group is left running, the restarted command included.
        assert wait_until(lambda: _group_gone(proc.pid), timeout=5)
    finally:
        if proc.poll() is None or not _group_gone(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False
