"""The packages' layering: the receiver never imports the workers, and the provider seam imports no config."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def run_fresh(*codes: str) -> None:
    """Run each of `codes` in a fresh interpreter from the repository root, all at once; fail with
    the stderr of any that failed."""
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True) for code in codes]
    results = [(proc.communicate(timeout=60)[1], proc.returncode) for proc in procs]
    assert [err for err, code in results if code] == []


def test_no_receiver_module_imports_the_workers() -> None:
    importing = []
    for path in sorted((ROOT / "receiver").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            importing += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n == "workers" or n.startswith("workers.")]
    assert importing == []


NO_WORKERS = (
    "import pkgutil, sys, importlib, receiver\n"
    "from receiver import cli, admin, api, callbacks, dispatch, publisher, sandbox\n"
    "for m in pkgutil.walk_packages(receiver.__path__, 'receiver.'):\n"
    "    if not m.name.startswith('receiver.migrations'):\n"
    "        importlib.import_module(m.name)\n"
    "loaded = [name for name in sys.modules if name == 'workers' or name.startswith('workers.')]\n"
    "assert not loaded, loaded\n"
)
SOURCE_AT_THE_TOP = (
    "import {first}\n"
    "from receiver.providers import Source\n"
    "from receiver.config import Source as ConfigSource\n"
    "assert ConfigSource is Source\n"
)


def test_the_app_cli_and_admin_load_no_workers_and_source_imports_whatever_loads_first() -> None:
    firsts = ("receiver.providers.xportcn", "receiver.providers.dajisaas", "receiver.config")
    run_fresh(NO_WORKERS, *(SOURCE_AT_THE_TOP.format(first=first) for first in firsts))
