"""Each intake check on its own, then `accept` putting them in order: no Redis, a SQLite file.

Signatures here are built with hashlib in the test (MD5 of key + timestamp + nonce + secret, upper-case
hex, as doc-vnm.pandapon.com/api-250496569 describes it), never with our own `sign`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from receiver import intake
from receiver.config import Source
from receiver.errors import (
    BadSignature,
    BadToken,
    ForbiddenAddress,
    MalformedPush,
    ReplayedNonce,
    StaleTimestamp,
    StoreUnavailable,
    UnknownSource,
)
from receiver.models import Event, SpentNonce
from receiver.providers import PushAuth, RawPush, family_for
from tests.conftest import CREDENTIALS, TOKENS

pytestmark = pytest.mark.unit

NOW_MS = 1_779_263_269_913  # 2026-05-20T07:47:49.913Z
ORDER = "2542285634920880794"


def source(**changes: Any) -> Source:
    base = Source(name="demo", family="xportcn", base_url="https://api.example", callback_token=TOKENS["demo"],
                  credentials={**CREDENTIALS["demo"], "portal": "pandapon"})
    return dataclasses.replace(base, **changes)


def frozen(monkeypatch: pytest.MonkeyPatch, now_ms: int = NOW_MS) -> None:
    """Stop intake's clock at `now_ms`."""
    monkeypatch.setattr(intake, "time", SimpleNamespace(time=lambda: now_ms / 1000))


def window(seconds: int) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(timestamp_window=seconds))


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest().upper()


def signed_push(body: dict[str, Any] | bytes, stamp: str | None = None, nonce: str = "Nq7Rk2Zp0xW4mV9sT1bC6dF8gH3jL5aE",
                secret: str = CREDENTIALS["demo"]["access_secret"]) -> RawPush:
    """A push signed as the provider signs it."""
    key = CREDENTIALS["demo"]["access_key"]
    stamp = stamp or str(int(time.time() * 1000))
    headers = {"access-key": key, "timestamp": stamp, "nonce-str": nonce, "user-id": CREDENTIALS["demo"]["user_id"],
               "signature": md5_upper(f"{key}{stamp}{nonce}{secret}")}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawPush(headers=headers, body=raw, content_type="application/json")


def price_push(order: str = ORDER, total: int = 23189) -> dict[str, Any]:
    return {"messageType": "ORDER_BUYER_VIEW_ORDER_PRICE_MODIFY", "messagePlatform": 1, "timestamp": str(NOW_MS),
            "messageBody": json.dumps({"orderId": order, "orderNo": "1232742280398373686", "totalAmount": total})}


# --- find_source --------------------------------------------------------------------------------
def test_a_configured_source_is_found_by_name(unit_services: Any) -> None:
    assert intake.find_source(unit_services, "daji") is unit_services.settings.sources["daji"]


@pytest.mark.parametrize("name", ["nobody", "DEMO", "demo ", ""])
def test_an_unknown_source_is_refused_naming_it(unit_services: Any, name: str) -> None:
    with pytest.raises(UnknownSource) as err:
        intake.find_source(unit_services, name)
    assert err.value.message == f"no source named '{name}'"


def test_an_unknown_source_name_is_made_safe_for_the_log(unit_services: Any) -> None:
    with pytest.raises(UnknownSource) as err:
        intake.find_source(unit_services, "x\ny")
    assert err.value.message == "no source named 'x\\ny'"


# --- check_address ------------------------------------------------------------------------------
ALLOWED = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize("ip", [None, "", "198.51.100.7", "not an address"])
def test_without_an_allow_list_any_client_passes(ip: str | None) -> None:
    intake.check_address(source(), ip)


@pytest.mark.parametrize("ip", ["203.0.113.1", "203.0.113.254", "2001:db8::5"])
def test_a_client_on_the_allow_list_passes(ip: str) -> None:
    intake.check_address(source(allow_ips=ALLOWED), ip)


@pytest.mark.parametrize("ip", ["203.0.114.1", "198.51.100.7", "2001:db9::5"])
def test_a_client_off_the_allow_list_is_refused_naming_its_address(ip: str) -> None:
    with pytest.raises(ForbiddenAddress) as err:
        intake.check_address(source(allow_ips=ALLOWED), ip)
    assert err.value.message == f"{ip} is not allowed"


@pytest.mark.parametrize("ip", [None, "", "203.0.113", "localhost"])
def test_an_unknown_client_address_is_refused_when_there_is_an_allow_list(ip: str | None) -> None:
    with pytest.raises(ForbiddenAddress) as err:
        intake.check_address(source(allow_ips=ALLOWED), ip)
    assert err.value.message == "client address unknown"


# --- check_token --------------------------------------------------------------------------------
def test_the_right_token_passes() -> None:
    intake.check_token(source(), TOKENS["demo"])


@pytest.mark.parametrize("token", [None, "", TOKENS["demo"][:-1], TOKENS["demo"] + "0", TOKENS["demo"].upper(), TOKENS["daji"]])
def test_a_missing_or_wrong_token_is_refused(token: str | None) -> None:
    with pytest.raises(BadToken) as err:
        intake.check_token(source(), token)
    assert err.value.message == "missing or wrong token"


# --- check_fresh --------------------------------------------------------------------------------
@pytest.mark.parametrize("offset_ms", [0, -300_000, 300_000, -1, 1])
def test_a_timestamp_within_the_window_passes(monkeypatch: pytest.MonkeyPatch, offset_ms: int) -> None:
    frozen(monkeypatch)
    intake.check_fresh(window(300), PushAuth(timestamp_ms=NOW_MS + offset_ms, nonce="n" * 32))


@pytest.mark.parametrize("offset_ms", [-300_001, 300_001, -3_600_000])
def test_a_timestamp_outside_the_window_is_stale(monkeypatch: pytest.MonkeyPatch, offset_ms: int) -> None:
    frozen(monkeypatch)
    with pytest.raises(StaleTimestamp) as err:
        intake.check_fresh(window(300), PushAuth(timestamp_ms=NOW_MS + offset_ms))
    assert err.value.message == "timestamp outside the 300s window"


def test_an_unsigned_push_has_no_timestamp_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen(monkeypatch)
    intake.check_fresh(window(1), PushAuth())


@pytest.mark.parametrize(("length", "ok"), [(32, True), (64, True), (65, False), (200, False)])
def test_a_nonce_longer_than_its_column_is_refused(monkeypatch: pytest.MonkeyPatch, length: int, ok: bool) -> None:
    frozen(monkeypatch)
    auth = PushAuth(timestamp_ms=NOW_MS, nonce="N" * length)
    if ok:
        intake.check_fresh(window(300), auth)
    else:
        with pytest.raises(BadSignature, match="nonce longer than 64 characters"):
            intake.check_fresh(window(300), auth)


# --- accept: the checks in order, then the inbox ------------------------------------------------
def events(svc: Any) -> int:
    with svc.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Event))


def test_a_signed_push_with_the_right_token_is_stored(unit_services: Any) -> None:
    push, stored = intake.accept(unit_services, "demo", TOKENS["demo"], "198.51.100.7", signed_push(price_push()))
    assert (push.kind, push.order.order_id if push.order else None) == ("price", ORDER)
    assert stored.event_id is not None and not stored.duplicate and events(unit_services) == 1


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
def test_a_signed_push_still_needs_the_url_token(unit_services: Any, token: str | None) -> None:
    """A valid signature header is no excuse for a missing or wrong token."""
    with pytest.raises(BadToken):
        intake.accept(unit_services, "demo", token, "198.51.100.7", signed_push(price_push()))
    assert events(unit_services) == 0


def test_an_unsigned_push_with_the_right_token_is_stored(unit_services: Any) -> None:
    raw = RawPush(headers={}, body=json.dumps(price_push()).encode(), content_type="application/json")
    _, stored = intake.accept(unit_services, "demo", TOKENS["demo"], None, raw)
    assert stored.event_id is not None and events(unit_services) == 1


def test_the_checks_come_in_their_order(unit_services: Any) -> None:
    """Source, then address, then token, then signature: each refusal names the first check failed."""
    svc = unit_services
    guarded = dataclasses.replace(svc.settings.sources["demo"], allow_ips=ALLOWED)
    svc.settings = dataclasses.replace(svc.settings, sources={**svc.settings.sources, "demo": guarded})
    bad = signed_push(price_push(), secret="another-secret")
    with pytest.raises(UnknownSource):
        intake.accept(svc, "nobody", None, "198.51.100.7", bad)
    with pytest.raises(ForbiddenAddress):
        intake.accept(svc, "demo", None, "198.51.100.7", bad)
    with pytest.raises(BadToken):
        intake.accept(svc, "demo", None, "203.0.113.9", bad)
    with pytest.raises(BadSignature):
        intake.accept(svc, "demo", TOKENS["demo"], "203.0.113.9", bad)
    stale = signed_push(price_push(), stamp=str(int(time.time() * 1000) - (svc.settings.timestamp_window + 60) * 1000))
    with pytest.raises(StaleTimestamp):
        intake.accept(svc, "demo", TOKENS["demo"], "203.0.113.9", stale)
    assert events(svc) == 0


def test_the_same_push_again_is_a_duplicate_and_its_headers_with_another_body_a_replay(unit_services: Any) -> None:
    raw = signed_push(price_push())
    intake.accept(unit_services, "demo", TOKENS["demo"], None, raw)
    _, again = intake.accept(unit_services, "demo", TOKENS["demo"], None, raw)
    assert (again.event_id, again.duplicate) == (None, True)
    forged = dataclasses.replace(raw, body=json.dumps(price_push(total=1)).encode())
    with pytest.raises(ReplayedNonce):
        intake.accept(unit_services, "demo", TOKENS["demo"], None, forged)
    assert events(unit_services) == 1


def test_a_malformed_signed_push_spends_its_nonce(unit_services: Any) -> None:
    raw = signed_push({**price_push(), "messagePlatform": 7})  # neither 0 (Taobao) nor 1 (1688)
    with pytest.raises(MalformedPush) as err:
        intake.accept(unit_services, "demo", TOKENS["demo"], None, raw)
    assert err.value.field == "messagePlatform"
    with unit_services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SpentNonce).where(SpentNonce.source == "demo")) == 1
    with pytest.raises(ReplayedNonce):  # the same headers on a good body: refused
        intake.accept(unit_services, "demo", TOKENS["demo"], None, dataclasses.replace(raw, body=json.dumps(price_push()).encode()))


def test_a_body_the_parser_chokes_on_is_malformed_not_a_crash(unit_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def choke(*args: Any) -> Any:
        raise KeyError("messageBody")

    monkeypatch.setattr(family_for("xportcn"), "parse_push", choke)
    raw = signed_push(price_push())
    with pytest.raises(MalformedPush) as err:
        intake.accept(unit_services, "demo", TOKENS["demo"], None, raw)
    assert (err.value.message, err.value.field) == ("body could not be read", "body")
    assert "callback.parse_failed source=demo" in [r.getMessage() for r in caplog.records]
    with unit_services.engine.connect() as conn:  # its nonce is spent all the same
        assert conn.scalar(select(func.count()).select_from(SpentNonce)) == 1


def test_a_push_that_cannot_be_stored_is_refused_for_a_retry(unit_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(intake, "store_push", down)
    with pytest.raises(StoreUnavailable) as err:
        intake.accept(unit_services, "demo", TOKENS["demo"], None, signed_push(price_push()))
    assert err.value.message == "could not store the push, retry later"
    assert "callback.store_failed source=demo" in [r.getMessage() for r in caplog.records]


def test_spend_without_a_nonce_touches_nothing(unit_services: Any) -> None:
    intake.spend(unit_services, source(), PushAuth())
    with unit_services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SpentNonce)) == 0


def test_a_nonce_that_cannot_be_recorded_is_logged_not_raised(unit_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def down(*args: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(intake, "spend_nonce", down)
    intake.spend(unit_services, source(), PushAuth(nonce="N" * 32))
    assert "callback.nonce_unrecorded source=demo" in [r.getMessage() for r in caplog.records]  # the whole line, as logged
