"""Arbitrary bodies, headers, form fields and queries on every endpoint: never a 500, and nothing
stored for a request that was refused."""
from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from receiver.models import Event
from tests.conftest import API_TOKEN, TOKENS

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
REFUSALS = {400, 401, 404, 405, 413}
HEADER_NAMES = st.sampled_from(
    ["access-key", "timestamp", "nonce-str", "signature", "user-id", "Content-Type", "X-Forwarded-For", "Authorization"]
)
HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
TOKENS_OR_NOT = st.sampled_from([None, TOKENS["demo"], TOKENS["daji"], "", "x" * 24])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "messageType": st.sampled_from(["ORDER_CREATE", "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "X"]) | JSONISH,
        "messageBody": JSONISH | JSONISH.map(json.dumps),
        "messagePlatform": st.sampled_from([0, 1, 2, "1"]) | JSONISH,
        "timestamp": st.integers(min_value=0).map(str) | JSONISH,
    },
)


def count_events(app) -> int:  # type: ignore[no-untyped-def]
    with app.extensions["receiver"].engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Event))


def post(client, app, source: str, token: str | None, body: bytes, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    """POST a push and check the two invariants; return the status."""
    before = count_events(app)
    query = f"?{urlencode({'token': token})}" if token is not None else ""
    resp = client.post(f"/callbacks/{quote(source, safe='')}{query}", data=body, headers=headers)
    assert resp.status_code == 200 or resp.status_code in REFUSALS, resp.status_code
    if resp.status_code != 200:
        assert count_events(app) == before
        assert resp.is_json and resp.json["ok"] is False
    return resp.status_code


@FUZZ
@given(
    source=st.sampled_from(["demo", "daji", "nobody"]) | st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=12),
    token=TOKENS_OR_NOT,
    body=st.binary(max_size=300),
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
)
def test_arbitrary_bytes_and_headers(app, client, source, token, body, headers):
    post(client, app, source, token, body, headers)


@FUZZ
@given(envelope=ENVELOPES, headers=st.dictionaries(HEADER_NAMES.filter(lambda h: h != "Content-Type"), HEADER_VALUES, max_size=4))
def test_arbitrary_json_envelopes(app, client, envelope, headers):
    post(client, app, "demo", TOKENS["demo"], json.dumps(envelope).encode(), {**headers, "Content-Type": "application/json"})


@FUZZ
@given(form=st.dictionaries(st.sampled_from(["message", "_dj_signature", "other"]), st.text(max_size=60) | JSONISH.map(json.dumps), max_size=3))
def test_arbitrary_form_fields(app, client, form):
    body = urlencode(form).encode()
    post(client, app, "daji", TOKENS["daji"], body, {"Content-Type": "application/x-www-form-urlencoded"})


@FUZZ
@given(
    path=st.sampled_from(["/api/orders/demo/", "/api/orders/daji/", "/api/events", "/healthz", "/readyz", "/api/orders/x/"]),
    tail=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), max_size=20),
    query=st.dictionaries(st.sampled_from(["status", "source", "page", "per_page", "x"]), st.text(max_size=8), max_size=3),
    auth=st.sampled_from([None, f"Bearer {API_TOKEN}", "Bearer nope", "Basic x"]) | HEADER_VALUES,
)
def test_read_api_never_fails(client, path, tail, query, auth):
    url = path + (tail if path.endswith("/") else "")
    resp = client.get(url, query_string=query, headers={"Authorization": auth} if auth is not None else {})
    assert resp.status_code in {200, 400, 401, 404, 503}, (url, resp.status_code)
