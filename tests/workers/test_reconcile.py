"""Reconciliation: a change the provider never pushed is repaired from its order list."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.conftest import wait_for
from tests.workers.test_refetch import AUTH
from workers.cli import main

PREFIX = {"demo": "xportcn", "daji": "dajisaas"}


@pytest.fixture
def cli(environ, monkeypatch):  # type: ignore[no-untyped-def]
    """Run `receiver ...` with the suite's environment."""
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return lambda *args: CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("source", ["demo", "daji"])
def test_reconcile_repairs_a_missed_price_correction(client, sandbox, cli, source):
    provider = sandbox.providers[PREFIX[source]]
    first = cli("reconcile", "--source", source)
    assert first.exit_code == 0, first.output
    order_id = provider.order_ids()[0]
    before = client.get(f"/api/orders/{source}/{order_id}", headers=AUTH).json
    provider.correct_price(order_id, -250)  # and no push ever comes
    again = cli("reconcile", "--source", source, "--since", "2020-01-01")
    assert again.exit_code == 0, again.output
    assert "page 1:" in again.output and again.output.strip().endswith("1 repaired")
    after = client.get(f"/api/orders/{source}/{order_id}", headers=AUTH).json
    assert after["total_amount"] == before["total_amount"] - 250
    assert after["history"][-1]["cause"] == "reconcile"


def test_beat_schedules_a_reconciliation_per_source(app, client, sandbox, worker):
    schedule = app.extensions["celery"].conf.beat_schedule
    assert {f"reconcile-{name}" for name in ("demo", "thai", "daji")} <= set(schedule)
    provider = sandbox.providers["xportcn"]
    order_id = provider.order_ids()[0]
    provider.step_status(order_id)
    app.extensions["celery"].send_task("workers.tasks.reconcile_source", args=["demo"])
    order = wait_for(lambda: (r := client.get(f"/api/orders/demo/{order_id}", headers=AUTH)).status_code == 200 and r.json)
    assert order["status"] == "awaiting_shipment" and order["history"][-1]["cause"] == "reconcile"
