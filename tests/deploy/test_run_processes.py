"""deploy/run-processes.sh: which Procfile processes `make run` hands to honcho."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.receiver.test_sandbox_cli import REAL_ONLY

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "run-processes.sh"


def processes(sources: Path, port: int = 8079) -> subprocess.CompletedProcess[str]:
    # `receiver` from this interpreter's environment, as `make run` puts .venv/bin first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RECEIVER_SOURCES_FILE": str(sources), "SANDBOX_PORT": str(port)}
    return subprocess.run([str(SCRIPT), "Procfile"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)


def test_without_a_sandbox_source_every_process_but_the_sandbox_starts(tmp_path):
    sources = tmp_path / "sources.toml"
    sources.write_text(REAL_ONLY)
    run = processes(sources)
    assert run.stdout.split() == ["web", "worker", "beat", "flower"]
    assert "points at http://127.0.0.1:8079/" in run.stderr


def test_with_the_example_sources_the_sandbox_starts_too():
    run = processes(ROOT / "sources.example.toml")
    assert run.stdout.split() == ["web", "worker", "beat", "flower", "sandbox"]
    # On a port no example source uses, the sandbox is left out again.
    assert "sandbox" not in processes(ROOT / "sources.example.toml", port=8080).stdout.split()


def test_make_run_hands_the_chosen_processes_to_honcho():
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    [line] = [line for line in dry.splitlines() if "honcho start" in line]
    assert "processes=$(deploy/run-processes.sh Procfile)" in line and line.endswith("honcho start -f Procfile $processes")
