"""`receiver check-config` against the loopback provider, and `receiver orders show`."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.models import EventStatus
from tests.conftest import CREDENTIALS, TOKENS
from tests.workers.test_refetch import ALIBABA, events_when, send


@pytest.fixture
def run(app, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Invoke the `receiver` command in the suite's environment, with `env` overrides (state reset as for `app`)."""

    def invoke(*args: str, **env: str):  # type: ignore[no-untyped-def]
        for key, value in {**environ, **env}.items():
            monkeypatch.setenv(key, value)
        try:
            return CliRunner().invoke(main, list(args))
        finally:
            # The command's app made itself the current Celery app, which shared tasks publish through.
            app.extensions["celery"].set_current()
            app.extensions["celery"].set_default()

    return invoke


def rows(output: str) -> dict[str, tuple[str, str]]:
    """check-config's table: check name -> (result, line)."""
    table = {}
    for line in output.splitlines()[1:]:
        for result in ("ok", "warn", "FAIL"):
            if f"  {result}  " in line:
                table[line.split("  ")[0].strip()] = (result, line)
    return table


def test_check_config_pings_everything_and_says_ok(run):
    result = run("check-config")
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert {k: v[0] for k, v in table.items()} == {
        "config": "ok", "api token": "ok", "database": "ok", "redis": "ok",
        "source demo": "ok", "source xport": "ok", "source thai": "ok", "source daji": "ok",
    }
    assert "signed order list call answered (1 order(s))" in table["source demo"][1]
    assert "keyed order list call answered" in table["source daji"][1]


def test_check_config_fails_on_a_wrong_secret(run, environ, tmp_path: Path):
    text = Path(environ["RECEIVER_SOURCES_FILE"]).read_text()
    for secret in (CREDENTIALS["demo"]["access_secret"], CREDENTIALS["daji"]["app_secret"]):
        text = text.replace(secret, "not-the-secret")
    wrong = tmp_path / "sources.toml"
    wrong.write_text(text)
    result = run("check-config", RECEIVER_SOURCES_FILE=str(wrong))
    assert result.exit_code == 1, result.output
    table = rows(result.output)
    assert table["source demo"][0] == "FAIL" and "signature error" in table["source demo"][1]
    assert table["source daji"][0] == "FAIL"
    assert table["source thai"][0] == "ok" and table["database"][0] == "ok"


def test_check_config_fails_when_redis_is_down_and_hides_passwords(run):
    result = run("check-config", RECEIVER_BROKER_URL="redis://:hunter2-secret@127.0.0.1:1/0")
    assert result.exit_code == 1
    assert rows(result.output)["redis"][0] == "FAIL"
    assert "hunter2" not in result.output


def test_check_config_names_a_bad_setting(run, tmp_path: Path):
    result = run("check-config", RECEIVER_SOURCES_FILE=str(tmp_path / "missing.toml"))
    assert result.exit_code == 1 and "RECEIVER_SOURCES_FILE" in result.output


def test_orders_show_prints_our_copy_with_lines_and_history(app, client, sandbox, worker, run):
    provider = sandbox.providers["xportcn"]
    send(client, provider, ALIBABA, "ORDER_CREATE")
    events_when(app, EventStatus.PROCESSED)
    send(client, provider, ALIBABA, provider.correct_price(ALIBABA, -150))
    events_when(app, EventStatus.PROCESSED, EventStatus.PROCESSED)
    result = run("orders", "show", "demo", ALIBABA)
    assert result.exit_code == 0, result.output
    assert "total_amount: 23194 (fen CNY)" in result.output
    assert "lines (1):" in result.output and "qty=3" in result.output
    assert "total_amount: 23344 -> 23194" in result.output
    missing = run("orders", "show", "demo", "no-such-order")
    assert missing.exit_code == 1 and "no order 'no-such-order'" in missing.output


def test_events_show_and_list_say_why_an_event_was_ignored(client, run):
    body = {"messageType": "ORDER_CREATE", "messageBody": {"orderStatus": "CANCEL", "id": "1232742280964604571"},
            "messagePlatform": 1, "timestamp": "1779263269913"}
    assert client.post(f"/callbacks/demo?token={TOKENS['demo']}", json=body).status_code == 200
    listed = run("events", "list", "--status", "ignored")
    assert listed.exit_code == 0 and "the summary body names no order id" in listed.output
    event_id = listed.output.split()[0]
    shown = run("events", "show", event_id)
    assert "ignored_reason: the summary body names no order id" in shown.output


def test_simulate_command_sends_the_shape_asked_for(live_url, worker, run):
    result = run("simulate", "price", "--source", "demo", "--shape", "model", "--url", live_url, "--wait")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("push 1/1 1688_ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY order=2542285634920880794 -> 200")
    assert "total_amount=23189" in result.output
    wrong = run("simulate", "price", "--source", "demo", "--shape", "taobao", "--order", "2542285634920880794", "--url", live_url)
    assert wrong.exit_code != 0 and "taobao" in wrong.output
