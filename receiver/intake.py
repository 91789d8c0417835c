"""Accepting one push: the checks in their fixed order, then the inbox, then the queue.

Each check fails with its own exception (and so its own status and log event); the order is
cheap-to-expensive and never stores or enqueues anything for a push that is refused. The last check,
a replayed nonce, is made by the inbox in the transaction that stores the push: one round trip to
the database instead of one to Redis and one to the database, and no nonce left behind by a push
that could not be stored.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from receiver.config import Source
from receiver.errors import (
    BadSignature,
    BadToken,
    ForbiddenAddress,
    MalformedPush,
    StaleTimestamp,
    StoreUnavailable,
    UnknownSource,
)
from receiver.inbox import Stored, spend_nonce, store_push
from receiver.logs import loggable
from receiver.providers import Push, PushAuth, RawPush, family_for
from receiver.services import Services

log = logging.getLogger("receiver.callbacks")
MAX_NONCE_LENGTH = 64  # the nonce columns' width; the Xportcn family sends 32


def find_source(svc: Services, name: str) -> Source:
    """The configured source of that name, or UnknownSource."""
    source = svc.settings.sources.get(name)
    if source is None:
        raise UnknownSource(f"no source named '{loggable(name)}'")
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


def check_fresh(svc: Services, auth: PushAuth) -> None:
    """Refuse a signed push outside the timestamp window, or with a nonce too long to keep.

    Whether the nonce was seen before is asked by the inbox, in the transaction that stores the push.
    """
    window = svc.settings.timestamp_window
    if auth.timestamp_ms is not None and abs(time.time() * 1000 - auth.timestamp_ms) > window * 1000:
        raise StaleTimestamp(f"timestamp outside the {window}s window")
    if auth.nonce is not None and len(auth.nonce) > MAX_NONCE_LENGTH:
        raise BadSignature(f"nonce longer than {MAX_NONCE_LENGTH} characters")


def spend(svc: Services, source: Source, auth: PushAuth) -> None:
    """Spend the nonce of a signed push we refuse after checking its signature (ReplayedNonce if spent)."""
    if auth.nonce is None:
        return
    try:
        spend_nonce(svc.engine, source.name, auth.nonce)
    except SQLAlchemyError:  # the push is refused either way
        log.warning("callback.nonce_unrecorded source=%s", source.name)


def accept(svc: Services, source_name: str, token: str | None, client_ip: str | None, raw: RawPush) -> tuple[Push, Stored]:
    """Verify, validate and store one push; raise a PushRejected subclass for anything refused."""
    source = find_source(svc, source_name)
    check_address(source, client_ip)
    check_token(source, token)
    family = family_for(source.family)
    auth = family.authenticate(source, raw)
    check_fresh(svc, auth)
    try:
        push = family.parse_push(source, raw)
    except MalformedPush:
        spend(svc, source, auth)  # its headers are not to be used again with another body
        raise
    except Exception as err:  # noqa: BLE001 - a body we failed to read: the sender learns it, never a 500 loop
        log.exception("callback.parse_failed source=%s", source.name)
        spend(svc, source, auth)
        raise MalformedPush("body could not be read", field="body") from err
    try:
        stored = store_push(svc.inbox_engine, source.name, raw, push, nonce=auth.nonce)
    except SQLAlchemyError as err:  # the provider must retry: never a false 200
        log.exception("callback.store_failed source=%s", source.name)
        raise StoreUnavailable("could not store the push, retry later") from err
    return push, stored
