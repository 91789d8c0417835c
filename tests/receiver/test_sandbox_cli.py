"""`receiver sandbox` as a command: serves every source of the sources file pointing at its port."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import requests

from receiver.config import load_sources
from receiver.errors import ProviderError
from receiver.providers import OrderRef, family_for
from tests.conftest import ROOT, free_port, wait_for


@pytest.fixture
def served(tmp_path):  # type: ignore[no-untyped-def]
    """`receiver sandbox` on a free port, with the example sources file pointed at it."""
    port = free_port()
    text = (ROOT / "sources.example.toml").read_text().replace("127.0.0.1:8079", f"127.0.0.1:{port}")
    sources = tmp_path / "sources.toml"
    sources.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "sandbox", "--port", str(port), "--sources", str(sources),
         "--broken-order", "29080593337363456"],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/_control/xportcn/orders"), timeout=20)
        yield port, load_sources(str(sources), {})
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.post(url, json={}, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_sandbox_command_serves_both_families_with_their_faults(served):
    port, sources = served
    http = requests.Session()
    demo, daji = sources["demo"], sources["daji"]
    [order] = family_for("xportcn").fetch_orders(http, demo, OrderRef("1688", "2542285634920880794", {"tbOrderId": "2542285634920880794"}))
    assert order.total_amount == 23344 and order.status == "awaiting_payment"
    with pytest.raises(ProviderError, match="1001"):  # --broken-order
        family_for("dajisaas").fetch_orders(http, daji, OrderRef("1688", "29080593337363456", {"orderId": "29080593337363456"}))
    wrong = dict(demo.credentials, access_secret="not-it")
    with pytest.raises(ProviderError, match="signature"):
        family_for("xportcn").fetch_orders(http, dataclasses.replace(demo, credentials=wrong),
                                           OrderRef("1688", "2542285634920880794", {"tbOrderId": "2542285634920880794"}))


REAL_ONLY = """
[sources.real]
family = "xportcn"
base_url = "https://www.xportcn.com/api"
portal = "pandapon"
access_key = "real-access-key"
access_secret = "real-access-secret"
user_id = "2100007341207"
callback_token = "real-callback-token-0001"
"""


def test_sandbox_check_says_whether_any_source_needs_it(tmp_path):
    from click.testing import CliRunner

    from receiver.cli import main

    real = tmp_path / "real.toml"
    real.write_text(REAL_ONLY)
    none = CliRunner().invoke(main, ["sandbox", "--check", "--port", "8079", "--sources", str(real)])
    assert none.exit_code == 1
    assert f"no source in {real} points at http://127.0.0.1:8079/" in none.output
    example = str(ROOT / "sources.example.toml")
    needed = CliRunner().invoke(main, ["sandbox", "--check", "--port", "8079", "--sources", example])
    assert needed.exit_code == 0, needed.output
    assert "demo (xportcn), daji (dajisaas)" in needed.output
    # Another port: the example's sources do not point there.
    assert CliRunner().invoke(main, ["sandbox", "--check", "--port", "8080", "--sources", example]).exit_code == 1
