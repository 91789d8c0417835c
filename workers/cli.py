"""The `receiver` command whole: the receiver's commands, and those that run the workers' code in place."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import click

from receiver.cli import WHEN, app_for_command, main
from receiver.services import services
from workers import pipeline


@main.command()
@click.option("--source", "source_name", required=True)
@click.option(
    "--since", type=WHEN, help="Start of the window: a UTC date, or 6h, 1d, 7d ago (default: RECEIVER_RECONCILE_WINDOW ago)."
)
def reconcile(source_name: str, since: datetime | None) -> None:
    """Compare a source's recent orders with ours now, and repair what differs."""
    with app_for_command() as app, app.app_context():
        svc = services()
        source = svc.settings.sources.get(source_name)
        if source is None:
            raise click.ClickException(f"no source {source_name!r} in {svc.settings.sources_file}")
        until = datetime.now(timezone.utc)
        start = since or until - timedelta(seconds=svc.settings.reconcile_window)
        click.echo(f"reconciling {source_name} from {start:%Y-%m-%d %H:%M:%S} to {until:%Y-%m-%d %H:%M:%S} UTC")
        report = pipeline.reconcile(
            svc,
            source,
            start,
            until,
            progress=lambda r: click.echo(f"  page {r.pages}: {r.orders} orders seen, {r.changed} repaired"),
        )
    click.echo(f"done: {report.pages} page(s), {report.orders} orders, {report.changed} repaired")


if __name__ == "__main__":
    sys.exit(main())
