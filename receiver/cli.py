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
@click.option("--sources", "sources_file", envvar="RECEIVER_SOURCES_FILE", default="sources.toml", show_default=True)
@click.option("--latency", type=float, default=0.0, help="Seconds added to every answer.")
@click.option("--fail-rate", type=float, default=0.0, help="Share of requests answered with an HTTP 500.")
def sandbox(port: int, sources_file: str, latency: float, fail_rate: float) -> None:
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
    box.faults.latency, box.faults.fail_rate = latency, fail_rate
    for source in sources.values():
        url = urlsplit(source.base_url)
        if url.hostname not in ("127.0.0.1", "localhost") or url.port != port:
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


if __name__ == "__main__":
    sys.exit(main())
