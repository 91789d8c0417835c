"""Accepting one push: the checks in their fixed order, then the inbox, then the queue.

Each check fails with its own exception (and so its own status and log event); the order is
cheap-to-expensive and never stores or enqueues anything for a push that is refused.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time

import redis
from sqlalchemy.exc import SQLAlchemyError

from receiver.config import Source
from receiver.errors import (
    BadToken,
    ForbiddenAddress,
    ReplayedNonce,
    StaleTimestamp,
    StoreUnavailable,
    UnknownSource,
)
from receiver.inbox import Stored, store_push
from receiver.providers import Push, PushAuth, RawPush, family_for
from receiver.services import Services

log = logging.getLogger("receiver.callbacks")


def find_source(svc: Services, name: str) -> Source:
    """The configured source of that name, or UnknownSource."""
    source = svc.settings.sources.get(name)
    if source is None:
        raise UnknownSource(f"no source named {name!r}")
    return source


def check_address(source: Source, client_ip: str | None) -> None:
    """Refuse a client outside the source's allow-list, when it has one."""
    if not source.allow_ips:
        return
    try:
        ip = ipaddress.ip_address(client_ip or "")
    except ValueError:
        raise ForbiddenAddress("client address unknown") from None
    if not any(ip in net for net in source.allow_ips):
        raise ForbiddenAddress(f"{ip} is not allowed")


def check_token(source: Source, token: str | None) -> None:
    """Refuse a push whose URL token is missing or wrong, comparing in constant time."""
    if not hmac.compare_digest((token or "").encode(), source.callback_token.encode()):
        raise BadToken("missing or wrong token")


def check_fresh(svc: Services, source: Source, auth: PushAuth) -> None:
    """Refuse a signed push outside the timestamp window, or whose nonce was seen within it."""
    window = svc.settings.timestamp_window
    if auth.timestamp_ms is not None and abs(time.time() * 1000 - auth.timestamp_ms) > window * 1000:
        raise StaleTimestamp(f"timestamp outside the {window}s window")
    if auth.nonce is None:
        return
    try:
        # Twice the window: a timestamp may be up to a window ahead of us, and its nonce must
        # outlive every moment the timestamp still passes.
        fresh = svc.redis.set(nonce_key(svc, source, auth.nonce), 1, nx=True, ex=2 * window)
    except redis.RedisError:
        # Availability wins: the inbox's dedupe still stops a replay from being processed twice.
        log.warning("callback.nonce_unchecked source=%s", source.name)
        return
    if not fresh:
        raise ReplayedNonce("nonce seen before")


def nonce_key(svc: Services, source: Source, nonce: str) -> str:
    """Where a seen nonce is kept."""
    return svc.key("nonce", source.name, nonce)


def accept(svc: Services, source_name: str, token: str | None, client_ip: str | None, raw: RawPush) -> tuple[Push, Stored]:
    """Verify, validate and store one push; raise a PushRejected subclass for anything refused."""
    source = find_source(svc, source_name)
    check_address(source, client_ip)
    check_token(source, token)
    family = family_for(source.family)
    auth = family.authenticate(source, raw)
    check_fresh(svc, source, auth)
    push = family.parse_push(source, raw)
    try:
        stored = store_push(svc.engine, source.name, raw, push)
    except SQLAlchemyError as err:  # the provider must retry: never a false 200
        log.exception("callback.store_failed source=%s", source.name)
        if auth.nonce is not None:  # its retry may be this very request again: let it through
            try:
                svc.redis.delete(nonce_key(svc, source, auth.nonce))
            except redis.RedisError:
                pass
        raise StoreUnavailable("could not store the push, retry later") from err
    return push, stored
