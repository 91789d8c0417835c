"""The `receiver` command."""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask

from receiver.config import load_settings, load_sources
from receiver.errors import ConfigError
from receiver.providers import FAMILIES
from receiver.sandbox import FAULT_MODES


def _settings():  # type: ignore[no-untyped-def]
    try:
        return load_settings(os.environ)
    except ConfigError as err:
        raise click.ClickException(f"configuration: {err}") from None


@click.group()
def main() -> None:
    """Receive sourcing-agent pushes and keep a true copy of every order."""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from receiver.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo("database schema is up to date")


@main.command()
@click.option("--port", type=int, default=8079, show_default=True)
@click.option("--family", type=click.Choice(sorted(FAMILIES)), help="Serve only this family's sources.")
@click.option("--sources", "sources_file", envvar="RECEIVER_SOURCES_FILE", default="sources.toml", show_default=True)
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--fail-rate", type=float, default=0.0, help="Share of requests that fail (see --fail-mode).")
@click.option("--fail-mode", type=click.Choice(FAULT_MODES), default=FAULT_MODES[0], show_default=True)
@click.option("--broken-order", "broken", multiple=True, help="An order id answered with a permanent error.")
@click.option("--check", is_flag=True, help="Serve nothing: exit 0 if some source points at PORT, 1 (saying so) if none does.")
def sandbox(
    port: int, family: str | None, sources_file: str, latency: float, fail_rate: float, fail_mode: str, broken: tuple[str, ...],
    check: bool,
) -> None:
    """Serve a loopback provider for every source whose base URL points at 127.0.0.1:PORT."""
    try:
        sources = load_sources(sources_file, os.environ)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None

    def here(base_url: str) -> bool:
        url = urlsplit(base_url)
        return url.hostname in ("127.0.0.1", "localhost") and url.port == port

    served = [s for s in sources.values() if here(s.base_url) and family in (None, s.family)]
    nothing = f"no source in {sources_file} points at http://127.0.0.1:{port}/"
    if check:
        # `make run` asks this before choosing honcho's processes: a sandbox with nothing to serve would
        # exit, and honcho would stop every other process with it.
        if not served:
            click.echo(f"sandbox: {nothing}, so none is needed")
            sys.exit(1)
        click.echo(f"sandbox: needed on port {port} by " + ", ".join(f"{s.name} ({s.family})" for s in served))
        return

    from receiver.sandbox import Sandbox

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")
    box = Sandbox(port=port)
    box.faults.latency, box.faults.fail_rate, box.faults.fail_mode = latency, fail_rate, fail_mode
    box.faults.broken_orders.update({order_id: (1001, "order is locked by the provider") for order_id in broken})
    for source in served:
        url = urlsplit(source.base_url)
        box.mount(url.path, FAMILIES[source.family].sandbox(source.credentials))
        click.echo(f"sandbox: {source.name} ({source.family}) at {source.base_url}")
    if not box.providers:
        raise click.ClickException(nothing)
    box.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        box.stop()


@main.command()
@click.argument("kind", type=click.Choice(["price", "status", "refund"]))
@click.option("--source", "source_name", required=True, help="A source whose base URL points at a sandbox.")
@click.option("--order", help="The order to change (default: the sandbox's first).")
@click.option("--count", type=int, default=1, show_default=True, help="How many changes, each with its push.")
@click.option("--duplicates", type=int, default=0, show_default=True, help="Extra deliveries of each push.")
@click.option("--shuffle", is_flag=True, help="Send the pushes in random order.")
@click.option("--shape", help="The push's body shape, one the source's family sends (Xportcn: summary, model, taobao; "
              "DajiSaaS: trade, taobao); default: the family's usual one for the order.")
@click.option("--wait", is_flag=True, help="Wait until our copy equals the provider's, and print it.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--url", "receiver_url", default="http://127.0.0.1:8000", show_default=True, help="The receiver.")
def simulate(
    kind: str, source_name: str, order: str | None, count: int, duplicates: int, shuffle: bool, shape: str | None,
    wait: bool, timeout: float, receiver_url: str,
) -> None:
    """Change an order in the sandbox and send the matching signed push to our callback URL."""
    from receiver import simulate as sim

    settings = _settings()
    source = settings.sources.get(source_name)
    if source is None:
        raise click.ClickException(f"no source {source_name!r} in {settings.sources_file}")
    sys.exit(sim.run(
        source, kind, receiver_url, settings.database_url, order, count, duplicates, shuffle, wait, timeout, click.echo, shape
    ))


@main.group()
def events() -> None:
    """The inbox: list, show and replay events."""


@contextmanager
def app_for_command() -> Iterator[Flask]:
    """The app on the environment's settings, its pools closed when the command is done."""
    from receiver import create_app

    try:
        app = create_app()
    except ConfigError as err:
        raise click.ClickException(f"configuration: {err}") from None
    try:
        yield app
    finally:
        svc = app.extensions["receiver"]
        svc.dispose()
        # Only the clients this command made: both are created on first use.
        if "redis" in vars(svc):
            svc.redis.close()
        if "http" in vars(svc):
            svc.http.close()


@events.command("list")
@click.option("--status", type=click.Choice(["received", "queued", "processed", "ignored", "failed", "dead"]))
@click.option("--source")
@click.option("--limit", type=int, default=50, show_default=True)
def events_list(status: str | None, source: str | None, limit: int) -> None:
    """List events, newest first."""
    from receiver.inbox import listing

    stmt = listing(status, source).limit(limit)
    with app_for_command() as app, app.extensions["receiver"].Session() as session:
        for e in session.scalars(stmt):
            note = e.last_error or e.ignored_reason
            error = f"  {note}" if note else ""
            click.echo(f"{e.id:>8} {e.received_at:%Y-%m-%d %H:%M:%S} {e.source:<10} {e.status:<9} {e.kind:<9} "
                       f"{e.order_id or '-':<20} {e.message_type}{error}")


@events.command("show")
@click.argument("event_id", type=int)
def events_show(event_id: int) -> None:
    """Show one event: its raw headers and body, attempts and error."""
    from receiver.models import Event

    with app_for_command() as app, app.extensions["receiver"].Session() as session:
        e = session.get(Event, event_id)
        if e is None:
            raise click.ClickException(f"no event {event_id}")
        for name in (
            "id",
            "source",
            "message_type",
            "kind",
            "platform",
            "order_id",
            "status",
            "attempts",
            "last_error",
            "ignored_reason",
            "received_at",
            "processed_at",
        ):
            click.echo(f"{name:>14}: {getattr(e, name)}")
        click.echo(f"{'headers':>14}: {e.headers}")
        click.echo(f"{'body':>14}: {e.body.decode('utf-8', 'replace')}")


class When(click.ParamType):
    """A moment: a date or time (UTC), or how long ago: 90s, 30m, 6h, 1d, 7d."""

    name = "when"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if len(text) > 1 and text[-1] in self.UNITS and text[:-1].isascii() and text[:-1].isdigit():
            return datetime.now(timezone.utc) - timedelta(seconds=int(text[:-1]) * self.UNITS[text[-1]])
        moment = click.DateTime().convert(text, param, ctx)
        return moment.replace(tzinfo=timezone.utc)


WHEN = When()


@events.command("replay")
@click.argument("event_ids", type=int, nargs=-1)
@click.option("--status", type=click.Choice(["dead", "failed", "received", "queued"]), help="Replay every event in this status.")
@click.option("--source", help="Only this source's events (with --status).")
@click.option("--since", type=WHEN, help="Only events received since: a UTC date, or 6h, 1d, 7d ago (with --status).")
def events_replay(event_ids: tuple[int, ...], status: str | None, source: str | None, since: datetime | None) -> None:
    """Put events back through the pipeline: by id, or all of a status (dead, usually)."""
    from receiver import dispatch, inbox
    from receiver.services import services

    if bool(event_ids) == bool(status):
        raise click.UsageError("give event ids, or --status (with optional --source and --since)")
    with app_for_command() as app, app.app_context():
        ids = list(event_ids) or inbox.select_for_replay(services().engine, status or "", source, since)
        queued = dispatch.replay(ids)
    click.echo(f"replayed {queued} of {len(ids)} event(s)")
    if ids and queued < len(ids):
        sys.exit(1)


@events.command("purge")
@click.option("--status", type=click.Choice(["dead", "processed", "ignored"]), required=True)
@click.option("--before", type=WHEN, required=True, help="Events received before: a UTC date, or 30d ago.")
@click.option("--source", help="Only this source's events.")
def events_purge(status: str, before: datetime, source: str | None) -> None:
    """Delete events for good (dead ones stay until replayed or purged here); order history stays."""
    from receiver.inbox import purge_events

    with app_for_command() as app:
        deleted = purge_events(app.extensions["receiver"].engine, (status,), before, source, budget=float("inf"))
    click.echo(f"deleted {deleted} {status} event(s) received before {before:%Y-%m-%d %H:%M:%S} UTC")


@main.group()
def orders() -> None:
    """Our copy of the orders."""


@orders.command("show")
@click.argument("source")
@click.argument("order_id")
def orders_show(source: str, order_id: str) -> None:
    """Show our copy of an order (by any of its ids) with its lines and history, from the database."""
    from receiver.orders import find_order, order_json

    with app_for_command() as app, app.extensions["receiver"].Session() as session:
        order = find_order(session, source, order_id)
        if order is None:
            raise click.ClickException(f"no order {order_id!r} at source {source!r}")
        o = order_json(order)
    for name in ("source", "platform", "provider_order_id", "order_no", "purchase_id", "status", "raw_status"):
        click.echo(f"{name:>17}: {o[name] if o[name] is not None else '-'}")
    for name in ("product_amount", "shipping_fee", "discount", "total_amount", "refund_amount"):
        click.echo(f"{name:>17}: {o[name]} (fen {o['currency']})")
    for name in ("modified_at", "fetched_at", "version"):
        click.echo(f"{name:>17}: {o[name] if o[name] is not None else '-'}")
    click.echo(f"lines ({len(o['lines'])}):")
    for line in o["lines"]:
        click.echo(f"  {line['line_id']}  sku={line['sku_id'] or '-'}  qty={line['quantity']}  price={line['price']}  "
                   f"amount={line['amount']}  refunded={line['refund_amount']}  {line['title'] or ''}")
    click.echo(f"history ({len(o['history'])}):")
    for h in o["history"]:
        click.echo(f"  {h['at']}  {h['field']}: {h['old']} -> {h['new']}  ({h['cause']})")


def _safe_url(url: str) -> str:
    """A URL fit to print: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot read is printed without anything after its scheme
        return url.split("://", 1)[0] + "://…"


@main.command("check-config")
def check_config() -> None:
    """Load the sources file and the environment, ping the database, Redis and each source's API; print a table."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from receiver.errors import ProviderError
    from receiver.migrate import alembic_config
    from receiver.providers import family_for

    settings = _settings()  # a bad setting stops here, naming it
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # its INFO lines are not ours to show
    rows = [("config", settings.sources_file, "ok", f"{len(settings.sources)} source(s): {', '.join(settings.sources)}")]
    if settings.api_token:
        rows.append(("api token", "RECEIVER_API_TOKEN", "ok", "set"))
    else:
        rows.append(("api token", "RECEIVER_API_TOKEN", "warn", "not set: the read API and /admin refuse everyone"))
    with app_for_command() as app:
        svc = app.extensions["receiver"]
        try:
            with svc.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
            if current == head:
                rows.append(("database", _safe_url(settings.database_url), "ok", f"schema at {head}"))
            else:
                rows.append(
                    (
                        "database",
                        _safe_url(settings.database_url),
                        "FAIL",
                        f"schema at {current}, head is {head}: run `receiver migrate`",
                    )
                )
        except SQLAlchemyError as err:
            rows.append(
                (
                    "database",
                    _safe_url(settings.database_url),
                    "FAIL",
                    f"{err.__class__.__name__}: {str(err).splitlines()[0][:120]}",
                )
            )
        try:
            svc.redis.ping()
            rows.append(("redis", _safe_url(settings.broker_url), "ok", f"{svc.redis.llen(settings.namespace)} task(s) queued"))
        except RedisError as err:
            rows.append(("redis", _safe_url(settings.broker_url), "FAIL", f"{err.__class__.__name__}: {err}"))
        for source in settings.sources.values():
            try:
                detail, result = family_for(source.family).ping(svc.http, source), "ok"
            except ProviderError as err:
                detail, result = err.message, "FAIL"
            rows.append((f"source {source.name}", f"{source.family} {source.base_url}", result, detail))
    header = ("check", "target", "result", "detail")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(3)]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3])
    if any(r[2] == "FAIL" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
