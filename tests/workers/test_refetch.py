"""End to end: a push through the receiver, a real worker re-fetching from the loopback provider."""
from __future__ import annotations

import pytest

from tests.conftest import API_TOKEN, TOKENS, wait_for

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ALIBABA = "2542285634920880794"
TAOBAO = "200058578338"


def send(client, provider, order_id: str, message_type: str, source: str = "demo", **kw):  # type: ignore[no-untyped-def]
    """Send the provider's push for `order_id` to our callback URL."""
    headers, body = provider.push(order_id, message_type, **kw)
    return client.post(f"/callbacks/{source}?token={TOKENS[source]}", data=body, headers=headers)


def order_when(client, source: str, order_id: str, **expected):  # type: ignore[no-untyped-def]
    """Wait until the read API shows the order with the expected fields; return it."""
    def check():
        resp = client.get(f"/api/orders/{source}/{order_id}", headers=AUTH)
        if resp.status_code == 200 and all(resp.json[k] == v for k, v in expected.items()):
            return resp.json
        return None
    return wait_for(check)


def history(order, field: str) -> list[tuple[str | None, str | None]]:
    return [(h["old"], h["new"]) for h in order["history"] if h["field"] == field]


@pytest.mark.parametrize("order_id", [ALIBABA, TAOBAO])
def test_price_correction_lands_in_state_and_history(client, sandbox, worker, order_id):
    provider = sandbox.providers["xportcn"]
    assert send(client, provider, order_id, "ORDER_CREATE").status_code == 200
    before = order_when(client, "demo", order_id)
    message_type = provider.correct_price(order_id, -150)
    resp = send(client, provider, order_id, message_type)
    assert resp.status_code == 200 and resp.json == {"ok": True}
    after = order_when(client, "demo", order_id, total_amount=before["total_amount"] - 150)
    assert history(after, "total_amount")[-1] == (str(before["total_amount"]), str(before["total_amount"] - 150))
    assert history(after, "total_amount")[-1] and after["history"][-1]["cause"].startswith("event:")
