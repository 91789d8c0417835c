"""The loopback DajiSaaS plays the provider on its own: its own `sign` check, buyerView, list paging
with a size cap and a creation-time window, and pushes signed with its own HMAC."""
from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import pytest

from receiver.config import Source
from receiver.providers import dajisaas as spec
from receiver.sandbox import dajisaas as fake

pytestmark = pytest.mark.unit  # fast: no Redis, no worker, no server

KEY, SECRET = "ak-box", "box-secret-0004"
DOC_ORDER = "2257164624870311973"
SOURCE = Source(name="box", family="dajisaas", base_url="http://sandbox", callback_token="t" * 24,
                credentials={"app_key": KEY, "app_secret": SECRET, "signature_scheme": "any", "send_app_secret": False})


def hand_signed(**params: Any) -> dict[str, Any]:
    """A request body signed here, by hand, as the docs describe `sign`."""
    body = {"appKey": KEY, **params}
    text = "&".join(f"{k}={v}" for k, v in sorted(body.items()) if v is not None) + f"&secret={SECRET}"
    return {**body, "sign": hashlib.md5(text.encode()).hexdigest().upper()}


def call(provider: fake.DajisaasProvider, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = provider.handle(path, {}, json.dumps(body).encode())
    assert status == 200
    return json.loads(json.dumps(answer))


@pytest.fixture
def box() -> fake.DajisaasProvider:
    return fake.DajisaasProvider(KEY, SECRET)


def test_it_shares_no_code_with_our_client() -> None:
    assert "receiver.providers" not in inspect.getsource(fake)


# --- sign ------------------------------------------------------------------------------------------
def test_a_hand_signed_request_is_served(box: fake.DajisaasProvider) -> None:
    answer = call(box, fake.BUYER_VIEW, hand_signed(webSite="1688", orderId=DOC_ORDER, requestTime=1758000000000))
    assert (answer["code"], answer["message"]) == (200, "操作成功")


def test_our_clients_signed_body_is_served(box: fake.DajisaasProvider) -> None:
    body = spec.signed_body(SOURCE, {"webSite": "1688", "orderId": DOC_ORDER})
    assert call(box, fake.BUYER_VIEW, body)["code"] == 200


@pytest.mark.parametrize(
    "body",
    [
        {**hand_signed(webSite="1688", orderId=DOC_ORDER), "sign": "0" * 32},  # a wrong sign
        {**hand_signed(webSite="1688", orderId=DOC_ORDER), "orderId": "1"},  # a field changed after signing
        {**hand_signed(webSite="1688", orderId=DOC_ORDER), "requestTime": 1},  # a field added after signing
        {**hand_signed(webSite="1688", orderId=DOC_ORDER), "sign": hand_signed(webSite="1688", orderId=DOC_ORDER)["sign"].lower()},
        {"appKey": KEY, "webSite": "1688", "orderId": DOC_ORDER},  # no sign, no secret
        {"appKey": KEY, "appSecret": "not-" + SECRET, "webSite": "1688", "orderId": DOC_ORDER},
        {**hand_signed(webSite="1688", orderId=DOC_ORDER), "appKey": "ak-other"},
    ],
)
def test_a_wrong_or_missing_sign_is_refused(box: fake.DajisaasProvider, body: dict[str, Any]) -> None:
    answer = call(box, fake.BUYER_VIEW, body)
    assert answer["code"] in (fake.ERROR_SIGN, fake.ERROR_KEYS) and answer["data"] is None


def test_app_secret_in_the_body_is_the_debugging_mode(box: fake.DajisaasProvider) -> None:
    body = {"appKey": KEY, "appSecret": SECRET, "webSite": "1688", "orderId": DOC_ORDER}
    assert call(box, fake.BUYER_VIEW, body)["code"] == 200


# --- buyerView ---------------------------------------------------------------------------------------
def test_buyer_view_answers_ids_as_rounded_numbers_and_exact_strings(box: fake.DajisaasProvider) -> None:
    status, answer = box.handle(fake.BUYER_VIEW, {}, json.dumps(hand_signed(webSite="1688", orderId=DOC_ORDER)).encode())
    text = json.dumps(answer)
    assert '"id": 2257164624870312000' in text and '"idOfStr": "2257164624870311973"' in text
    assert '"subItemID": 2257164624870312000' in text and '"subItemIDString": "2257164624870311974"' in text
    base = answer["data"]["baseInfo"]
    assert (base["totalAmount"], base["shippingFee"]) == (11.26, 1.15)  # yuan decimals
    assert set(answer) >= {"code", "message", "data", "timestamp", "traceId"}


@pytest.mark.parametrize(("params", "code"), [({"webSite": "taobao", "orderId": DOC_ORDER}, 400),
                                              ({"webSite": "1688", "orderId": "1"}, 400)])
def test_buyer_view_refuses_what_it_cannot_answer(box: fake.DajisaasProvider, params: dict[str, Any], code: int) -> None:
    assert call(box, fake.BUYER_VIEW, hand_signed(**params))["code"] == code


# --- the order list ------------------------------------------------------------------------------
def _compact(moment: datetime) -> str:
    china = moment.astimezone(timezone(timedelta(hours=8)))
    return china.strftime("%Y%m%d%H%M%S") + f"{china.microsecond // 1000:03d}+0800"


def test_the_list_ignores_an_order_id_filter(box: fake.DajisaasProvider) -> None:
    answer = call(box, fake.ORDER_LIST, hand_signed(orderId=DOC_ORDER, page=1, pageSize=20))
    assert [r["baseInfo"]["idOfStr"] for r in answer["data"]["result"]] == box.order_ids()
    assert answer["data"]["result"][0]["baseInfo"]["idOfStr"] != DOC_ORDER


def test_the_list_caps_the_page_size_and_counts_every_record(box: fake.DajisaasProvider) -> None:
    box.page_size_cap = 2
    box.add_orders(3)
    pages = [call(box, fake.ORDER_LIST, hand_signed(page=p, pageSize=50))["data"] for p in (1, 2, 3, 4)]
    assert [len(p["result"]) for p in pages] == [2, 2, 1, 0]
    assert {p["totalRecord"] for p in pages} == {5}
    assert len({r["baseInfo"]["idOfStr"] for p in pages for r in p["result"]}) == 5


def test_the_list_applies_the_creation_time_window(box: fake.DajisaasProvider) -> None:
    now = datetime.now(timezone.utc)
    box.orders[DOC_ORDER]["baseInfo"]["createTime"] = (now - timedelta(days=3)).isoformat()
    inside = call(box, fake.ORDER_LIST, hand_signed(createStartTime=_compact(now - timedelta(days=1)),
                                                     createEndTime=_compact(now), page=1, pageSize=20))["data"]
    assert [r["baseInfo"]["idOfStr"] for r in inside["result"]] == [fake.SEED[0]["baseInfo"]["idOfStr"]]
    assert inside["totalRecord"] == 1
    older = call(box, fake.ORDER_LIST, hand_signed(createStartTime=_compact(now - timedelta(days=4)),
                                                    createEndTime=_compact(now - timedelta(days=2)), page=1, pageSize=20))["data"]
    assert [r["baseInfo"]["idOfStr"] for r in older["result"]] == [DOC_ORDER]


# --- pushes ------------------------------------------------------------------------------------------
def _hmac(text: str) -> bytes:
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha1).digest()


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("value-hex-upper", lambda m: _hmac(m).hex().upper()),
        ("value-hex-lower", lambda m: _hmac(m).hex()),
        ("value-base64", lambda m: base64.b64encode(_hmac(m)).decode()),
        ("name-value-hex-upper", lambda m: _hmac("message" + m).hex().upper()),
        ("name-value-hex-lower", lambda m: _hmac("message" + m).hex()),
        ("name-value-base64", lambda m: base64.b64encode(_hmac("message" + m)).decode()),
    ],
)
@pytest.mark.parametrize("shape", ["trade", "taobao"])
def test_pushes_are_signed_with_the_accounts_scheme(scheme: str, expected: Any, shape: str) -> None:
    box = fake.DajisaasProvider(KEY, SECRET, signature_scheme=scheme)
    headers, body = box.push(DOC_ORDER, box.correct_price(DOC_ORDER), shape=shape)
    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert fields["_dj_signature"] == expected(fields["message"])


def test_a_taobao_push_has_the_documented_envelope(box: fake.DajisaasProvider) -> None:
    for change, (kind, key) in ((box.step_status, (3, "purchase_id")), (box.correct_price, (8, "purchaseOrderId"))):
        _, body = box.push(DOC_ORDER, change(DOC_ORDER), shape="taobao")
        msg = json.loads(parse_qs(body.decode())["message"][0])
        assert set(msg) == {"seller_id", "message_type", "data", "timestamp", "site"}
        assert msg["message_type"] == kind and msg["data"][key] == box.taobao_purchase_id(DOC_ORDER)
        assert abs(msg["timestamp"] - datetime.now(timezone.utc).timestamp()) < 60  # seconds
