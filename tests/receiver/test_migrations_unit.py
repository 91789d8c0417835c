"""Fast tests: migration 0007_admin_orders on a database that already holds orders, up and down."""
from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from receiver.migrate import alembic_config, upgrade

pytestmark = pytest.mark.unit


def test_existing_orders_get_the_time_of_their_last_change_and_the_indexes_come_and_go(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    upgrade(url, "0006")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO orders (id, source, platform, provider_order_id, status, raw_status, product_amount, shipping_fee, discount,"
            " total_amount, refund_amount, currency, fetched_at, version) VALUES"
            " (1, 'demo', '1688', 'A-1', 'shipped', 'waitbuyerreceive', 22599, 745, 155, 23189, 0, 'CNY', '2026-11-30 10:00:00.000000', 2),"
            " (2, 'demo', '1688', 'A-2', 'shipped', 'waitbuyerreceive', 22599, 745, 0, 23344, 0, 'CNY', '2026-11-29 08:00:00.000000', 1)"))
        conn.execute(text(
            "INSERT INTO order_changes (order_id, field, old, new, at, cause) VALUES"
            " (1, 'status', NULL, 'shipped', '2026-11-30 09:00:00.000000', 'event:1'),"
            " (1, 'total_amount', '23344', '23189', '2026-11-30 09:30:00.000000', 'event:2')"))
    upgrade(url)
    with engine.connect() as conn:
        changed = dict(conn.execute(text("SELECT provider_order_id, changed_at FROM orders")).all())
    # The last recorded change; an order with none recorded, its last fetch.
    assert changed == {"A-1": "2026-11-30 09:30:00.000000", "A-2": "2026-11-29 08:00:00.000000"}
    names = {i["name"] for t in ("orders", "order_changes") for i in inspect(engine).get_indexes(t)}
    assert {"ix_orders_changed_at", "ix_orders_source_changed_at", "ix_orders_status_changed_at", "ix_order_changes_field_at"} <= names

    command.downgrade(alembic_config(url), "0006")
    inspector = inspect(create_engine(url))
    assert "changed_at" not in {c["name"] for c in inspector.get_columns("orders")}
    assert not {i["name"] for t in ("orders", "order_changes") for i in inspector.get_indexes(t)} & names - {
        "ix_orders_source_order_no", "ix_orders_source_purchase_id", "ix_orders_source_status_fetched_at", "ix_order_changes_order_id"}
