"""Secrets stay out of logs; client addresses come only from trusted proxy hops."""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time

import pytest

from receiver.providers import xportcn
from tests.conftest import API_TOKEN, CREDENTIALS, TOKENS

SECRETS = [API_TOKEN, *TOKENS.values(), *(c.get("access_secret") or c.get("app_secret") for c in CREDENTIALS.values())]
BODY = {"messageType": "ORDER_CREATE", "messageBody": {"orderId": "2542285634920880794"}, "messagePlatform": 1}


def test_secrets_and_offered_tokens_are_never_logged(client, make_app, caplog):
    caplog.set_level(logging.DEBUG)
    c = CREDENTIALS["demo"]
    offered = "offered-wrong-token-42424242"
    for token, headers in [
        (TOKENS["demo"], xportcn.signed_headers(c["access_key"], c["access_secret"], c["user_id"])),
        (offered, {}),
        (TOKENS["demo"], xportcn.signed_headers(c["access_key"], "wrong-secret-777", c["user_id"])),
    ]:
        client.post(f"/callbacks/demo?token={token}", json={**BODY, "timestamp": str(time.time_ns())}, headers=headers)
    client.get("/api/events", headers={"Authorization": f"Bearer {offered}"})
    down = make_app(broker_url="redis://127.0.0.1:1/0")
    down.test_client().post(f"/callbacks/demo?token={TOKENS['demo']}", json={**BODY, "timestamp": "1"})
    assert "callback.bad_token" in caplog.text and "callback.bad_signature" in caplog.text
    for secret in [*SECRETS, offered, "wrong-secret-777"]:
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("hops", "forwarded_for", "status"),
    [
        (0, "203.0.113.9", 401),  # no trusted proxy: the header is the client's own word, ignored
        (1, "203.0.113.9", 200),  # our proxy says the client is inside the allow-list
        (1, "203.0.113.9, 198.51.100.7", 401),  # a spoofed first hop; our proxy appended the truth
    ],
)
def test_allow_list_reads_only_trusted_hops(settings, make_app, hops, forwarded_for, status):
    demo = dataclasses.replace(settings.sources["demo"], allow_ips=(ipaddress.ip_network("203.0.113.0/24"),))
    app = make_app(trusted_proxies=hops, sources={**settings.sources, "demo": demo})
    resp = app.test_client().post(
        f"/callbacks/demo?token={TOKENS['demo']}",
        json={**BODY, "timestamp": str(time.time_ns())},
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert resp.status_code == status
