"""Settings: built once at start-up from the environment and the sources file, validated, then passed on."""
from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy.engine import make_url

from receiver.errors import ConfigError
from receiver.providers import Source, family_for

ENV_PREFIX = "env:"


# Each alert rule: on by default, with the threshold it compares against (its unit in the comment).
RULE_DEFAULTS = {
    "price_corrected": 0.0,  # percent change of the total, at least
    "refund": 0.0,  # fen refunded by one change, at least
    "order_closed": 0.0,  # (no threshold) closed or cancelled after we had seen it open
    "dead_letter": 0.0,  # (no threshold) an event failed for good
    "push_rejections": 20.0,  # refused pushes of one source within a minute
    "queue_backlog": 1000.0,  # tasks waiting on the queue
}


@dataclass(frozen=True)
class Rule:
    """One alert rule's switch and threshold."""

    enabled: bool = True
    threshold: float = 0.0


@dataclass(frozen=True)
class EmailSink:
    """SMTP delivery of alerts."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = True

    def __repr__(self) -> str:
        return f"EmailSink(host={self.host!r}, port={self.port}, recipients={self.recipients!r})"


@dataclass(frozen=True)
class AlertSettings:
    """Which alerts are raised, how often at most, and where they go (the log always)."""

    rules: Mapping[str, Rule]
    dedupe_window: int = 600
    webhook_url: str | None = None
    slack_webhook_url: str | None = None
    email: EmailSink | None = None

    def __repr__(self) -> str:
        sinks = [n for n in ("webhook_url", "slack_webhook_url", "email") if getattr(self, n)]
        return f"AlertSettings(sinks={['log', *sinks]})"


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with."""

    database_url: str
    broker_url: str
    api_token: str | None
    sources: Mapping[str, Source]
    sources_file: str
    alerts: AlertSettings = AlertSettings(rules={name: Rule(True, t) for name, t in RULE_DEFAULTS.items()})
    namespace: str = "receiver"
    redis_master_name: str = "mymaster"
    # Three hours: the Xportcn family retries a push every 30 minutes, 5 times, with its first headers.
    timestamp_window: int = 3 * 3600
    max_body_bytes: int = 1024 * 1024
    trusted_proxies: int = 0
    max_retries: int = 8
    retry_backoff: float = 2.0
    retry_backoff_max: float = 600.0
    sweep_grace: int = 60
    coalesce_window: float = 1.0
    sweep_interval: float = 30.0
    reconcile_interval: float = 3600.0
    reconcile_window: float = 86400.0
    db_timeout: float = 5.0
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_require_token: bool = False
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    counts_ttl: float = 5.0  # seconds the inbox's counts (metrics, admin) may be old
    retention_days: float = 30.0  # processed and ignored events older than this are deleted
    refresh_open_after: float = 6 * 3600.0  # seconds before an open order with no news is re-fetched
    allowed_hosts: tuple[str, ...] = ()  # Host headers the app answers; empty: any
    metrics_multiproc_dir: str | None = None

    def __repr__(self) -> str:
        return f"Settings(database_url=<set>, broker_url={self.broker_url!r}, sources={list(self.sources)})"


class _EnvSchema(Schema):
    """The RECEIVER_* variables, with their defaults."""

    class Meta:
        unknown = EXCLUDE

    RECEIVER_DATABASE_URL = fields.String(load_default=None)
    RECEIVER_BROKER_URL = fields.String(
        load_default="redis://127.0.0.1:6379/0",
        validate=validate.Regexp(r"^(redis|rediss|unix|sentinel)://", error="must be a redis://, rediss://, unix:// or sentinel:// URL"),
    )
    RECEIVER_API_TOKEN = fields.String(load_default=None, validate=validate.Length(min=16))
    RECEIVER_SOURCES_FILE = fields.String(load_default="sources.toml")
    RECEIVER_REDIS_MASTER_NAME = fields.String(load_default="mymaster")
    RECEIVER_NAMESPACE = fields.String(load_default="receiver", validate=validate.Regexp(r"^[A-Za-z0-9_.-]+$"))
    RECEIVER_TIMESTAMP_WINDOW = fields.Integer(load_default=3 * 3600, validate=validate.Range(min=1))
    RECEIVER_MAX_BODY_BYTES = fields.Integer(load_default=1024 * 1024, validate=validate.Range(min=1024))
    RECEIVER_TRUSTED_PROXIES = fields.Integer(load_default=0, validate=validate.Range(min=0, max=5))
    RECEIVER_MAX_RETRIES = fields.Integer(load_default=8, validate=validate.Range(min=0))
    RECEIVER_RETRY_BACKOFF = fields.Float(load_default=2.0, validate=validate.Range(min=0))
    RECEIVER_RETRY_BACKOFF_MAX = fields.Float(load_default=600.0, validate=validate.Range(min=0))
    RECEIVER_SWEEP_GRACE = fields.Integer(load_default=60, validate=validate.Range(min=1))
    RECEIVER_COALESCE_WINDOW = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=60))
    RECEIVER_SWEEP_INTERVAL = fields.Float(load_default=30.0, validate=validate.Range(min=0.5))
    RECEIVER_RECONCILE_INTERVAL = fields.Float(load_default=3600.0, validate=validate.Range(min=10))
    RECEIVER_RECONCILE_WINDOW = fields.Float(load_default=86400.0, validate=validate.Range(min=60))
    RECEIVER_DB_TIMEOUT = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=60))
    RECEIVER_LOG_LEVEL = fields.String(
        load_default="INFO", validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
    )
    RECEIVER_LOG_FORMAT = fields.String(load_default="json", validate=validate.OneOf(["json", "text"]))
    RECEIVER_METRICS_REQUIRE_TOKEN = fields.Boolean(load_default=False)
    RECEIVER_WORKER_METRICS_PORT = fields.Integer(load_default=0, validate=validate.Range(min=0, max=65535))
    RECEIVER_WORKER_METRICS_HOST = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1))
    RECEIVER_COUNTS_TTL = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=3600))
    RECEIVER_RETENTION_DAYS = fields.Float(load_default=30.0, validate=validate.Range(min=0.01))
    RECEIVER_REFRESH_OPEN_AFTER = fields.Float(load_default=6 * 3600.0, validate=validate.Range(min=60))
    RECEIVER_ALLOWED_HOSTS = fields.String(load_default="")


class _SourceSchema(Schema):
    """The keys every source has, whatever its family; the family's own schema checks the rest."""

    class Meta:
        unknown = EXCLUDE

    family = fields.String(required=True)
    base_url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    callback_token = fields.String(required=True, validate=validate.Length(min=16))
    allow_ips = fields.List(fields.String(), load_default=list)
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.05, max=60))
    rate_limit = fields.Float(load_default=10.0, validate=validate.Range(min=0.01))
    rate_burst = fields.Integer(load_default=10, validate=validate.Range(min=1))


COMMON_SOURCE_KEYS = frozenset(_SourceSchema().fields)
SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DATABASES = ("sqlite", "postgresql")


def check_database_url(url: str) -> str:
    """The database URL, if SQLAlchemy can read it and it names a database we support."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises several kinds; all mean the same here
        raise ConfigError(f"RECEIVER_DATABASE_URL: {err.__class__.__name__}: {err}") from None
    if parsed.get_backend_name() not in DATABASES:
        raise ConfigError(f"RECEIVER_DATABASE_URL: {parsed.get_backend_name()} is not supported (use {' or '.join(DATABASES)})")
    return url


class _RuleSchema(Schema):
    enabled = fields.Boolean(load_default=True)
    threshold = fields.Float(load_default=None, validate=validate.Range(min=0))


class _EmailSchema(Schema):
    host = fields.String(required=True)
    port = fields.Integer(load_default=587, validate=validate.Range(min=1, max=65535))
    sender = fields.Email(required=True)
    recipients = fields.List(fields.Email(), required=True, validate=validate.Length(min=1))
    username = fields.String(load_default=None)
    password = fields.String(load_default=None)
    starttls = fields.Boolean(load_default=True)


class _AlertsSchema(Schema):
    """The `[alerts]` table of the sources file."""

    dedupe_window = fields.Integer(load_default=600, validate=validate.Range(min=0))
    webhook_url = fields.Url(load_default=None, require_tld=False, schemes={"http", "https"})
    slack_webhook_url = fields.Url(load_default=None, require_tld=False, schemes={"http", "https"})
    email = fields.Nested(_EmailSchema, load_default=None)
    rules = fields.Dict(keys=fields.String(validate=validate.OneOf(sorted(RULE_DEFAULTS))), values=fields.Nested(_RuleSchema), load_default=dict)


def load_alerts(table: Mapping[str, Any], environ: Mapping[str, str]) -> AlertSettings:
    """Validate the `[alerts]` table, resolving `env:VAR` values."""

    def resolve(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, f"{where}.{k}") for k, v in value.items()}
        return _resolve_env(value, environ, where)

    try:
        data = _AlertsSchema().load(resolve(dict(table), "alerts"))
    except ValidationError as err:
        raise ConfigError(_first_error(err, "alerts")) from None
    rules = {
        name: Rule(
            enabled=data["rules"].get(name, {}).get("enabled", True),
            threshold=default if data["rules"].get(name, {}).get("threshold") is None else data["rules"][name]["threshold"],
        )
        for name, default in RULE_DEFAULTS.items()
    }
    email = data["email"]
    return AlertSettings(
        rules=rules,
        dedupe_window=data["dedupe_window"],
        webhook_url=data["webhook_url"],
        slack_webhook_url=data["slack_webhook_url"],
        email=EmailSink(**{**email, "recipients": tuple(email["recipients"])}) if email else None,
    )


def _first_error(err: ValidationError, prefix: str) -> str:
    """Flatten marshmallow's nested messages into one line that names the first bad setting."""
    messages: Any = err.messages
    path = [prefix] if prefix else []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        path.append(str(key))
    if isinstance(messages, list):
        messages = messages[0]
    return f"{'.'.join(path)}: {messages}"


def _resolve_env(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """Replace an `env:VAR` value by that environment variable, which must be set."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        var = value[len(ENV_PREFIX):]
        if var not in environ:
            raise ConfigError(f"{where}: environment variable {var} is not set")
        return environ[var]
    if isinstance(value, list):
        return [_resolve_env(v, environ, where) for v in value]
    return value


def load_source(name: str, table: Mapping[str, Any], environ: Mapping[str, str]) -> Source:
    """Validate one `[sources.<name>]` table, resolving `env:VAR` values."""
    where = f"sources.{name}"
    if not SOURCE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: a source name is 1 to 64 letters, digits, '_' or '-' (it is part of the URL)")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    resolved = {key: _resolve_env(value, environ, f"{where}.{key}") for key, value in table.items()}
    try:
        common = _SourceSchema().load(resolved)
    except ValidationError as err:
        raise ConfigError(_first_error(err, where)) from None
    try:
        family = family_for(common["family"])
    except KeyError:
        raise ConfigError(f"{where}.family: unknown family {common['family']!r}") from None
    rest = {k: v for k, v in resolved.items() if k not in COMMON_SOURCE_KEYS}
    try:
        credentials = family.credentials_schema().load(rest)
    except ValidationError as err:
        raise ConfigError(_first_error(err, where)) from None
    try:
        allow_ips = tuple(ipaddress.ip_network(ip, strict=False) for ip in common["allow_ips"])
    except ValueError as err:
        raise ConfigError(f"{where}.allow_ips: {err}") from None
    return Source(
        name=name,
        family=common["family"],
        base_url=common["base_url"].rstrip("/"),
        callback_token=common["callback_token"],
        credentials=credentials,
        allow_ips=allow_ips,
        timeout=common["timeout"],
        rate_limit=common["rate_limit"],
        rate_burst=common["rate_burst"],
    )


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"RECEIVER_SOURCES_FILE: {path} not found (copy sources.example.toml to start)"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"RECEIVER_SOURCES_FILE: {path}: {err}") from None
    return data


def load_sources(path: str, environ: Mapping[str, str]) -> dict[str, Source]:
    """Read and validate the sources file's sources."""
    return _sources(_read_toml(path), path, environ)


def _sources(data: Mapping[str, Any], path: str, environ: Mapping[str, str]) -> dict[str, Source]:
    tables = data.get("sources")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"RECEIVER_SOURCES_FILE: {path} has no [sources.<name>] table")
    return {name: load_source(name, table, environ) for name, table in tables.items()}


def default_database_url() -> str:
    """A SQLite file under ./var, created on demand."""
    var = Path("var").resolve()
    var.mkdir(exist_ok=True)
    return f"sqlite:///{var / 'receiver.db'}"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build and validate the settings from an environment mapping; raise ConfigError naming the bad one."""
    present = {k: v for k, v in environ.items() if k.startswith("RECEIVER_") and v != ""}
    try:
        env = _EnvSchema().load(present)
    except ValidationError as err:
        raise ConfigError(_first_error(err, "")) from None
    sources_file = env["RECEIVER_SOURCES_FILE"]
    data = _read_toml(sources_file)
    return Settings(
        database_url=check_database_url(env["RECEIVER_DATABASE_URL"]) if env["RECEIVER_DATABASE_URL"] else default_database_url(),
        broker_url=env["RECEIVER_BROKER_URL"],
        api_token=env["RECEIVER_API_TOKEN"],
        sources=_sources(data, sources_file, environ),
        sources_file=sources_file,
        alerts=load_alerts(data.get("alerts", {}), environ),
        namespace=env["RECEIVER_NAMESPACE"],
        redis_master_name=env["RECEIVER_REDIS_MASTER_NAME"],
        timestamp_window=env["RECEIVER_TIMESTAMP_WINDOW"],
        max_body_bytes=env["RECEIVER_MAX_BODY_BYTES"],
        trusted_proxies=env["RECEIVER_TRUSTED_PROXIES"],
        max_retries=env["RECEIVER_MAX_RETRIES"],
        retry_backoff=env["RECEIVER_RETRY_BACKOFF"],
        retry_backoff_max=env["RECEIVER_RETRY_BACKOFF_MAX"],
        sweep_grace=env["RECEIVER_SWEEP_GRACE"],
        coalesce_window=env["RECEIVER_COALESCE_WINDOW"],
        sweep_interval=env["RECEIVER_SWEEP_INTERVAL"],
        reconcile_interval=env["RECEIVER_RECONCILE_INTERVAL"],
        reconcile_window=env["RECEIVER_RECONCILE_WINDOW"],
        db_timeout=env["RECEIVER_DB_TIMEOUT"],
        log_level=env["RECEIVER_LOG_LEVEL"],
        log_format=env["RECEIVER_LOG_FORMAT"],
        metrics_require_token=env["RECEIVER_METRICS_REQUIRE_TOKEN"],
        worker_metrics_port=env["RECEIVER_WORKER_METRICS_PORT"],
        worker_metrics_host=env["RECEIVER_WORKER_METRICS_HOST"],
        counts_ttl=env["RECEIVER_COUNTS_TTL"],
        retention_days=env["RECEIVER_RETENTION_DAYS"],
        refresh_open_after=env["RECEIVER_REFRESH_OPEN_AFTER"],
        allowed_hosts=tuple(h.strip() for h in env["RECEIVER_ALLOWED_HOSTS"].split(",") if h.strip()),
        # prometheus_client's own variable: set, each process writes its counts there to be summed.
        metrics_multiproc_dir=environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
