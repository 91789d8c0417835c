"""The service's exceptions: one hierarchy, each class knowing the HTTP status it stands for."""
from __future__ import annotations


class ReceiverError(Exception):
    """Base of every error this service raises on purpose."""

    status = 500
    event = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__)
        self.message = message or (self.__class__.__doc__ or "").strip()


class ConfigError(ReceiverError):
    """The settings or the sources file are invalid."""


# --- rejected pushes: each has its own status and its own log event -------------------------------
class PushRejected(ReceiverError):
    """A push was refused."""

    status = 400
    event = "callback.rejected"


class UnknownSource(PushRejected):
    """No source of that name."""

    status = 404
    event = "callback.unknown_source"


class BadToken(PushRejected):
    """Missing or wrong callback token."""

    status = 401
    event = "callback.bad_token"


class ForbiddenAddress(PushRejected):
    """The client address is not on the source's allow-list."""

    status = 401
    event = "callback.forbidden_ip"


class BadSignature(PushRejected):
    """The signature does not verify with the source's secret."""

    status = 401
    event = "callback.bad_signature"


class StaleTimestamp(PushRejected):
    """The timestamp is outside the accepted window."""

    status = 401
    event = "callback.stale_timestamp"


class ReplayedNonce(PushRejected):
    """This nonce was spent by another push."""

    status = 401
    event = "callback.replayed_nonce"


class MalformedPush(PushRejected):
    """The body is not a valid message."""

    status = 400
    event = "callback.malformed"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class StoreUnavailable(PushRejected):
    """The push could not be stored; the provider should retry."""

    status = 503
    event = "callback.store_failed"


# --- talking to a provider's API ------------------------------------------------------------------
class ProviderError(ReceiverError):
    """A provider API call failed."""

    event = "provider.error"


class TransientProviderError(ProviderError):
    """A failure worth retrying: time-out, connection error, 5xx, 429."""

    event = "provider.transient"


class PermanentProviderError(ProviderError):
    """A failure that retrying will not fix: auth error, other 4xx, unparseable answer, no such order."""

    event = "provider.permanent"


# --- read API ------------------------------------------------------------------------------------
class Unauthorized(ReceiverError):
    """Missing or wrong API token."""

    status = 401
    event = "api.unauthorized"


class NotFound(ReceiverError):
    """No such resource."""

    status = 404
    event = "api.not_found"


class BadRequest(ReceiverError):
    """The request's parameters are invalid."""

    status = 400
    event = "api.bad_request"


class QueueUnavailable(ReceiverError):
    """The queue (Redis) could not take the work asked for; nothing was done, try again."""

    status = 503
    event = "api.queue_unavailable"
