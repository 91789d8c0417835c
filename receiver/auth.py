"""The API token check that the read API, the admin pages and /metrics share."""
from __future__ import annotations

import hmac

from receiver.errors import Unauthorized


def token_matches(given: str | None, token: str | None) -> bool:
    """Whether `given` is the configured token, compared in constant time; never true without a token."""
    ok = hmac.compare_digest((given or "").encode(), (token or "").encode())
    return bool(token) and ok


def check_bearer(header: str | None, token: str | None) -> None:
    """Refuse a request without the right Bearer token."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
        raise Unauthorized("missing or wrong token")
