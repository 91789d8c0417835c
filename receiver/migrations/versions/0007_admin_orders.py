"""orders.changed_at and the indexes of the admin's order list and changes page

The order list is newest change first, filtered by source or status, and the changes page reads
one window of some fields' changes (a partial index leaves first fetches out): each an index range,
never a scan of the table. Existing orders get the time of their last recorded change.

Revision ID: 0007_admin_orders
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_admin_orders'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE orders SET changed_at ="
        " (SELECT max(order_changes.at) FROM order_changes WHERE order_changes.order_id = orders.id)"
    )
    op.execute("UPDATE orders SET changed_at = fetched_at WHERE changed_at IS NULL")
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_changed_at', ['changed_at'], unique=False)
        batch_op.create_index('ix_orders_source_changed_at', ['source', 'changed_at'], unique=False)
        batch_op.create_index('ix_orders_status_changed_at', ['status', 'changed_at'], unique=False)
    with op.batch_alter_table('order_changes', schema=None) as batch_op:
        batch_op.create_index('ix_order_changes_field_at', ['field', 'at'], unique=False,
                              sqlite_where=sa.text('old IS NOT NULL'), postgresql_where=sa.text('old IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('order_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_order_changes_field_at')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_status_changed_at')
        batch_op.drop_index('ix_orders_source_changed_at')
        batch_op.drop_index('ix_orders_changed_at')
        batch_op.drop_column('changed_at')
