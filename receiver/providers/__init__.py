"""The seam between the service and the provider families: shared types and the registry.

Each family lives in one module of this package and knows everything about its provider: how its
pushes are verified and parsed, how its API is signed, and how its order JSON maps to ours. Nothing
outside this package knows a provider's field names.
"""
from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from marshmallow import EXCLUDE, ValidationError, missing

from receiver.errors import PermanentProviderError, TransientProviderError

if TYPE_CHECKING:
    from marshmallow import Schema
    from werkzeug.datastructures import Headers

    from receiver.sandbox import FakeProvider

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Source:
    """One account at one provider, and the secrets that guard its callback URL."""

    name: str
    family: str
    base_url: str
    callback_token: str
    credentials: Mapping[str, Any]
    allow_ips: tuple[IPNetwork, ...] = ()
    timeout: float = 10.0
    rate_limit: float = 10.0  # outbound API calls per second, across all workers
    rate_burst: int = 10

    def __repr__(self) -> str:
        # Secrets never reach a log line through a repr.
        return f"Source(name={self.name!r}, family={self.family!r}, base_url={self.base_url!r})"


# Normalised order statuses, by how far along an order is; a re-fetch never moves an order to a
# lower rank unless the provider gives a newer modified time.
STATUS_RANK = {
    "awaiting_payment": 0,
    "awaiting_shipment": 1,
    "shipped": 2,
    "received": 3,
    "completed": 4,
    "cancelled": 5,
    "closed": 5,
    "other": None,
}


@dataclass(frozen=True)
class RawPush:
    """A push as it came over HTTP: what every family's verifier and parser read."""

    headers: Mapping[str, str] | Headers  # read by lower-case name: the request's case-insensitive headers, or stored ones
    body: bytes
    content_type: str


@dataclass(frozen=True)
class PushAuth:
    """What a family's verifier found that the core checks uniformly: freshness and replay."""

    timestamp_ms: int | None = None
    nonce: str | None = None


@dataclass(frozen=True)
class OrderRef:
    """Which order a push announces; `lookup` holds the family's own filters for re-fetching it."""

    platform: str
    order_id: str
    lookup: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Push:
    """A parsed push: a hint, never the order's truth."""

    message_type: str
    kind: str
    dedupe_key: str
    order: OrderRef | None
    ignored: str | None = None  # why nothing is re-fetched for it; None: it names an order to re-fetch

    @property
    def actionable(self) -> bool:
        """Whether the push leads to a re-fetch of its order."""
        return self.ignored is None and self.order is not None

    @property
    def ignored_reason(self) -> str | None:
        """Why no re-fetch comes of the push, as the inbox keeps it (255 characters); None when one does."""
        return None if self.actionable else (self.ignored or "names no order")[:255]


@dataclass(frozen=True)
class LineSnapshot:
    """One order line as the provider's API gave it, normalised."""

    line_id: str
    product_id: str | None
    sku_id: str | None
    title: str | None
    quantity: int
    price: int
    amount: int
    refund_amount: int
    raw_status: str | None


@dataclass(frozen=True)
class OrderSnapshot:
    """One order as the provider's API gave it, normalised: amounts in fen, status in our set."""

    platform: str
    provider_order_id: str
    order_no: str | None
    purchase_id: str | None
    status: str
    raw_status: str
    product_amount: int
    shipping_fee: int
    discount: int
    total_amount: int
    refund_amount: int
    currency: str
    modified_at: datetime | None
    lines: tuple[LineSnapshot, ...] = ()


class Http(Protocol):
    """What a family calls its provider's API through: a requests.Session, or receiver.ratelimit's
    LimitedHttp, which takes a token of the source's rate limit before each call."""

    def get(
        self, url: str, *, json: Any = ..., params: Any = ..., headers: Any = ..., timeout: Any = ..., allow_redirects: bool = ...
    ) -> Any:
        """GET, as requests.Session does."""

    def post(
        self, url: str, *, json: Any = ..., params: Any = ..., headers: Any = ..., timeout: Any = ..., allow_redirects: bool = ...
    ) -> Any:
        """POST, as requests.Session does."""


class Family(Protocol):
    """What a provider family module offers the core."""

    name: str
    push_headers: tuple[str, ...]  # lower-case names of the headers its pushes carry, kept with each event

    def credentials_schema(self) -> Schema:
        """The marshmallow schema of this family's source keys (credentials and options)."""

    def authenticate(self, source: Source, raw: RawPush) -> PushAuth:
        """Verify a push's signature; raise BadSignature, or MalformedPush when it cannot be read."""

    def parse_push(self, source: Source, raw: RawPush) -> Push:
        """Validate and parse a push; raise MalformedPush naming the bad field."""

    def fetch_orders(self, http: Http, source: Source, ref: OrderRef) -> list[OrderSnapshot]:
        """Re-fetch the announced order through the signed API; raise Transient/PermanentProviderError."""

    def list_orders(
        self, http: Http, source: Source, since: datetime, until: datetime
    ) -> Iterator[list[OrderSnapshot]]:
        """Page through the orders of a time window (for reconciliation), one page per item."""

    def ping(self, http: Http, source: Source) -> str:
        """Make the cheapest signed read (order list, page 1, size 1); a short OK text, or raise ProviderError."""

    def held_order_ref(
        self, platform: str, provider_order_id: str, order_no: str | None, purchase_id: str | None
    ) -> OrderRef | None:
        """How to re-fetch an order we hold, with no push to go by; None when the family cannot."""


def has_control(text: str) -> bool:
    """Whether `text` holds a control, format, surrogate or line-separator character (NUL, newline, U+2028…).

    No provider id or message type has one; in our columns, logs and pages they are trouble (a NUL
    is refused by PostgreSQL, a newline forges a log line), so a push carrying one is malformed.
    """
    # isprintable() is one C loop, true for almost every text we see, and false for every character
    # of these categories (and for some harmless ones, such as a no-break space): only then look closer.
    return not text.isprintable() and any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in text)


CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # Cs: a lone surrogate, which no database stores


def plain_text(value: str) -> None:
    """A marshmallow validator: no control characters (see `has_control`)."""
    if has_control(value):
        raise ValidationError("must not contain control characters")


def loader(schema: Schema) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """`schema.load` for a flat schema that drops unknown keys and has no hooks, at a tenth of its cost.

    Each of the schema's own fields deserializes and validates its value, as `schema.load` has them
    do, without `Schema.load`'s machinery around them (about 0.1 ms of a push's 0.5). Whatever a
    field refuses is loaded again by `schema.load` itself, so a refusal and its message are the
    schema's: the schema stays the one statement of the rules.
    """
    hooks = getattr(schema, "_hooks", None)
    if hooks is None or any(hooks.values()) or schema.unknown != EXCLUDE:
        raise ValueError(f"{type(schema).__name__} needs Schema.load: it has hooks or keeps unknown keys")
    plan = [(f.data_key or name, f.attribute or name, f) for name, f in schema.load_fields.items()]

    def load(data: Mapping[str, Any]) -> dict[str, Any]:
        loaded: dict[str, Any] = {}
        try:
            for key, attr, field in plan:
                value = field.deserialize(data.get(key, missing), key, data)
                if value is not missing:
                    loaded[attr] = value
        except ValidationError:
            return schema.load(data)  # raises the schema's own error
        return loaded

    return load


def first_field(err: ValidationError, default: str) -> str:
    """The first field a marshmallow error names, to name it in a 400."""
    messages: Any = err.messages
    return next(iter(messages)) if isinstance(messages, dict) and messages else default


# How many pages one reconciliation reads at most per list, so that a provider that ignores the
# window cannot keep a worker busy for ever.
MAX_PAGES = 200
# Both families' APIs and 1688's times without an offset are on Beijing time.
CHINA_TIME = timezone(timedelta(hours=8))


def pages_by_total(
    fetch: Callable[[int, int], tuple[int | None, list[dict[str, Any]]]], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Every record of a list, a page at a time: `fetch(number, size)` answers (total, records).

    A page shorter than asked is not the end, since a server may cap the page size: the total is,
    and without one an empty page. Later pages are asked in the size the server capped the first to,
    so that page numbers count what it actually serves.
    """
    seen = 0
    for number in range(1, MAX_PAGES + 1):
        total, records = fetch(number, size)
        if records:
            yield records
        seen += len(records)
        if not records or (total is not None and seen >= total):
            return
        if number == 1 and len(records) < size:
            size = len(records)


def post_json(http: Http, url: str, payload: Mapping[str, Any], headers: Mapping[str, str], timeout: float) -> Any:
    """POST JSON and return the decoded answer, sorting failures into transient and permanent."""
    return request_json(http, "POST", url, headers, timeout, json=payload)


def request_json(
    http: Http,
    method: str,
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    json: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> Any:
    """Make one API call and return the decoded answer, sorting failures into transient and permanent."""
    import requests

    try:
        call = http.get if method == "GET" else http.post
        resp = call(url, json=json, params=params, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except requests.Timeout as err:
        raise TransientProviderError(f"timeout after {timeout}s: {url}") from err
    except requests.ConnectionError as err:
        raise TransientProviderError(f"connection failed: {url}") from err
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TransientProviderError(f"HTTP {resp.status_code} from {url}")
    if resp.status_code != 200:
        raise PermanentProviderError(f"HTTP {resp.status_code} from {url}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError as err:
        raise PermanentProviderError(f"answer from {url} is not JSON") from err


def answer_data(answer: Any, message_key: str, transient_codes: frozenset[int], success: int = 200) -> Any:
    """The `data` of a `{code, <message_key>, data}` answer; an error code raises, transient or not."""
    if not isinstance(answer, dict) or "code" not in answer:
        raise PermanentProviderError("answer has no code")
    code = answer.get("code")
    if code != success:
        msg = f"provider code {code}: {answer.get(message_key)}"
        if isinstance(code, int) and code in transient_codes:
            raise TransientProviderError(msg)
        raise PermanentProviderError(msg)
    return answer.get("data")


def order_records(records: Any, where: str) -> list[dict[str, Any]]:
    """A list of order records from an answer: none is an empty page, anything else is an error."""
    if records is None:
        return []
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PermanentProviderError(f"answer {where} is not a list of orders")
    return records


def as_int(value: Any, what: str) -> int:
    """An integer field of a provider answer; a permanent error when it is not one."""
    if isinstance(value, bool):
        raise PermanentProviderError(f"{what} is not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if value is None:
        return 0
    raise PermanentProviderError(f"{what} is not an integer: {value!r}")


@dataclass(frozen=True)
class Registered:
    """One family as the app, the CLI, the sandbox and the tests find it: our client, and the loopback
    provider that plays the other side with code of its own."""

    client: Family
    sandbox: Callable[[Mapping[str, Any]], FakeProvider]  # a source's credentials -> a fresh provider


def family_for(name: str) -> Family:
    """The family client registered under `name`; KeyError when there is none."""
    return FAMILIES[name].client


def _registry() -> dict[str, Registered]:
    """Every family, by name: the one list a new family is added to."""
    # Imported here, after everything above exists: each family module imports this package's types.
    from receiver.providers import dajisaas, xportcn
    from receiver.sandbox.dajisaas import DajisaasProvider
    from receiver.sandbox.xportcn import XportcnProvider

    families = (Registered(xportcn.FAMILY, XportcnProvider.for_source), Registered(dajisaas.FAMILY, DajisaasProvider.for_source))
    return {f.client.name: f for f in families}


FAMILIES = _registry()
# Headers worth keeping with a raw event: each family's own and a few of HTTP's; cookies and
# proxies' headers are not. Sorted, so that the stored JSON is the same for the same push.
KEPT_HEADERS = tuple(
    sorted({"content-length", "content-type", "user-agent", *(h for f in FAMILIES.values() for h in f.client.push_headers)})
)
