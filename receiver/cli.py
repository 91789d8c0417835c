"""The `receiver` command."""
from __future__ import annotations

import logging
import os
import sys
import time
from urllib.parse import urlsplit

import click

from receiver.config import load_settings, load_sources
from receiver.errors import ConfigError


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
@click.option("--family", type=click.Choice(["xportcn", "dajisaas"]), help="Serve only this family's sources.")
@click.option("--sources", "sources_file", envvar="RECEIVER_SOURCES_FILE", default="sources.toml", show_default=True)
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--fail-rate", type=float, default=0.0, help="Share of requests that fail (see --fail-mode).")
@click.option("--fail-mode", type=click.Choice(["http500", "http429", "timeout", "code"]), default="http500", show_default=True)
@click.option("--broken-order", "broken", multiple=True, help="An order id answered with a permanent error.")
def sandbox(
    port: int, family: str | None, sources_file: str, latency: float, fail_rate: float, fail_mode: str, broken: tuple[str, ...]
) -> None:
    """Serve a loopback provider for every source whose base URL points at 127.0.0.1:PORT."""
    from receiver.sandbox import Sandbox
    from receiver.sandbox.dajisaas import DajisaasProvider
    from receiver.sandbox.xportcn import XportcnProvider

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")
    try:
        sources = load_sources(sources_file, os.environ)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    box = Sandbox(port=port)
    box.faults.latency, box.faults.fail_rate, box.faults.fail_mode = latency, fail_rate, fail_mode
    box.faults.broken_orders.update({order_id: (1001, "order is locked by the provider") for order_id in broken})
    for source in sources.values():
        url = urlsplit(source.base_url)
        if url.hostname not in ("127.0.0.1", "localhost") or url.port != port or family not in (None, source.family):
            continue
        creds = source.credentials
        if source.family == "xportcn":
            box.mount(url.path, XportcnProvider(creds["access_key"], creds["access_secret"], creds["user_id"]))
            click.echo(f"sandbox: {source.name} ({source.family}) at {source.base_url}")
        elif source.family == "dajisaas":
            box.mount(url.path, DajisaasProvider(creds["app_key"], creds["app_secret"]))
            click.echo(f"sandbox: {source.name} ({source.family}) at {source.base_url}")
    if not box.providers:
        raise click.ClickException(f"no source in {sources_file} points at http://127.0.0.1:{port}/")
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
@click.option("--wait", is_flag=True, help="Wait until our copy equals the provider's, and print it.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--url", "receiver_url", default="http://127.0.0.1:8000", show_default=True, help="The receiver.")
def simulate(
    kind: str, source_name: str, order: str | None, count: int, duplicates: int, shuffle: bool, wait: bool,
    timeout: float, receiver_url: str,
) -> None:
    """Change an order in the sandbox and send the matching signed push to our callback URL."""
    from receiver import simulate as sim

    settings = _settings()
    source = settings.sources.get(source_name)
    if source is None:
        raise click.ClickException(f"no source {source_name!r} in {settings.sources_file}")
    sys.exit(sim.run(source, kind, receiver_url, settings.database_url, order, count, duplicates, shuffle, wait, timeout, click.echo))


if __name__ == "__main__":
    sys.exit(main())
