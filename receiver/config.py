"""Settings: built once at start-up from the environment and the sources file, validated, then passed on."""
from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as fields_of
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from marshmallow.fields import Boolean, Float, Integer, String, Url
from marshmallow.validate import Length, OneOf, Range, Regexp
from sqlalchemy.engine import make_url

from receiver.errors import ConfigError
from receiver.providers import Source, family_for

ENV_PREFIX = "env:"
DATABASES = ("sqlite", "postgresql")


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


def default_database_url() -> str:
    """A SQLite file under ./var, created on demand."""
    var = Path("var").resolve()
    var.mkdir(exist_ok=True)
    return f"sqlite:///{var / 'receiver.db'}"


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


def _hosts(text: str) -> tuple[str, ...]:
    return tuple(h.strip() for h in text.split(",") if h.strip())


def setting(env: str, loader: fields.Field, parse: Callable[[Any], Any] | None = None, **default: Any) -> Any:
    """A setting read from the environment variable `env`, declared once: `loader` validates its text,
    `parse` (if any) turns the loaded value into the setting's, and `default` or `default_factory`
    is what it is when the variable is unset or empty."""
    return field(**default, metadata={"env": env, "loader": loader, "parse": parse})


BROKER_URL = Regexp(r"^(redis|rediss|unix|sentinel)://", error="must be a redis://, rediss://, unix:// or sentinel:// URL")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service is configured with: each environment setting with its variable,
    validation and default, from which `load_settings` reads them."""

    sources: Mapping[str, Source]
    alerts: AlertSettings = AlertSettings(rules={name: Rule(True, t) for name, t in RULE_DEFAULTS.items()})
    database_url: str = setting("RECEIVER_DATABASE_URL", String(), check_database_url, default_factory=default_database_url)
    broker_url: str = setting("RECEIVER_BROKER_URL", String(validate=BROKER_URL), default="redis://127.0.0.1:6379/0")
    api_token: str | None = setting("RECEIVER_API_TOKEN", String(validate=Length(min=16)), default=None)
    sources_file: str = setting("RECEIVER_SOURCES_FILE", String(), default="sources.toml")
    namespace: str = setting("RECEIVER_NAMESPACE", String(validate=Regexp(r"^[A-Za-z0-9_.-]+$")), default="receiver")
    redis_master_name: str = setting("RECEIVER_REDIS_MASTER_NAME", String(), default="mymaster")
    # Three hours: the Xportcn family retries a push every 30 minutes, 5 times, with its first headers.
    timestamp_window: int = setting("RECEIVER_TIMESTAMP_WINDOW", Integer(validate=Range(min=1)), default=3 * 3600)
    max_body_bytes: int = setting("RECEIVER_MAX_BODY_BYTES", Integer(validate=Range(min=1024)), default=1024 * 1024)
    trusted_proxies: int = setting("RECEIVER_TRUSTED_PROXIES", Integer(validate=Range(min=0, max=5)), default=0)
    max_retries: int = setting("RECEIVER_MAX_RETRIES", Integer(validate=Range(min=0)), default=8)
    retry_backoff: float = setting("RECEIVER_RETRY_BACKOFF", Float(validate=Range(min=0)), default=2.0)
    retry_backoff_max: float = setting("RECEIVER_RETRY_BACKOFF_MAX", Float(validate=Range(min=0)), default=600.0)
    sweep_grace: int = setting("RECEIVER_SWEEP_GRACE", Integer(validate=Range(min=1)), default=60)
    coalesce_window: float = setting("RECEIVER_COALESCE_WINDOW", Float(validate=Range(min=0, max=60)), default=1.0)
    sweep_interval: float = setting("RECEIVER_SWEEP_INTERVAL", Float(validate=Range(min=0.5)), default=30.0)
    reconcile_interval: float = setting("RECEIVER_RECONCILE_INTERVAL", Float(validate=Range(min=10)), default=3600.0)
    reconcile_window: float = setting("RECEIVER_RECONCILE_WINDOW", Float(validate=Range(min=60)), default=86400.0)
    db_timeout: float = setting("RECEIVER_DB_TIMEOUT", Float(validate=Range(min=0.1, max=60)), default=5.0)
    log_level: str = setting("RECEIVER_LOG_LEVEL", String(validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])), default="INFO")
    log_format: str = setting("RECEIVER_LOG_FORMAT", String(validate=OneOf(["json", "text"])), default="json")
    metrics_require_token: bool = setting("RECEIVER_METRICS_REQUIRE_TOKEN", Boolean(), default=False)
    worker_metrics_port: int = setting("RECEIVER_WORKER_METRICS_PORT", Integer(validate=Range(min=0, max=65535)), default=0)
    worker_metrics_host: str = setting("RECEIVER_WORKER_METRICS_HOST", String(validate=Length(min=1)), default="127.0.0.1")
    # Seconds the inbox's counts (metrics, admin) may be old.
    counts_ttl: float = setting("RECEIVER_COUNTS_TTL", Float(validate=Range(min=0, max=3600)), default=5.0)
    # Processed and ignored events older than this many days are deleted.
    retention_days: float = setting("RECEIVER_RETENTION_DAYS", Float(validate=Range(min=0.01)), default=30.0)
    # Seconds before an open order with no news is re-fetched.
    refresh_open_after: float = setting("RECEIVER_REFRESH_OPEN_AFTER", Float(validate=Range(min=60)), default=6 * 3600.0)
    # Host headers the app answers, comma-separated; empty: any.
    allowed_hosts: tuple[str, ...] = setting("RECEIVER_ALLOWED_HOSTS", String(), _hosts, default=())
    # Linked from the admin pages' header, for tasks.
    flower_url: str = setting("RECEIVER_FLOWER_URL", Url(require_tld=False, schemes={"http", "https"}), default="http://127.0.0.1:5555")
    # prometheus_client's own variable: set, each process writes its counts there to be summed.
    metrics_multiproc_dir: str | None = setting("PROMETHEUS_MULTIPROC_DIR", String(), default=None)

    def __repr__(self) -> str:
        return f"Settings(database_url=<set>, broker_url={self.broker_url!r}, sources={list(self.sources)})"


# The environment variables and the dataclass fields they set, derived from the declarations above.
ENV_SETTINGS = {f.metadata["env"]: f for f in fields_of(Settings) if "env" in f.metadata}
_EnvSchema = Schema.from_dict({env: f.metadata["loader"] for env, f in ENV_SETTINGS.items()}, name="EnvSchema")


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
    rules = fields.Dict(
        keys=fields.String(validate=validate.OneOf(sorted(RULE_DEFAULTS))), values=fields.Nested(_RuleSchema), load_default=dict
    )


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
        var = value[len(ENV_PREFIX) :]
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
        raise ConfigError(f"RECEIVER_SOURCES_FILE: {path} not found (copy sources.example.toml to start)") from None
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


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build and validate the settings from an environment mapping; raise ConfigError naming the bad one."""
    present = {env: environ[env] for env in ENV_SETTINGS if environ.get(env, "") != ""}
    try:
        loaded = _EnvSchema().load(present)
    except ValidationError as err:
        raise ConfigError(_first_error(err, "")) from None
    values = {}
    for env, value in loaded.items():
        parse = ENV_SETTINGS[env].metadata["parse"]
        values[ENV_SETTINGS[env].name] = parse(value) if parse else value
    sources_file = values.get("sources_file", ENV_SETTINGS["RECEIVER_SOURCES_FILE"].default)
    data = _read_toml(sources_file)
    return Settings(
        sources=_sources(data, sources_file, environ),
        alerts=load_alerts(data.get("alerts", {}), environ),
        **values,
    )
