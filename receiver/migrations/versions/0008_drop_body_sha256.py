"""events.body_sha256 dropped: computed on every push, read by nothing

The dedupe key is a function of the source and the body in both families (0003 dropped the unique
constraint on this column for that reason), and the body itself is kept. Downgrade brings the column
back filled from the stored bodies where the database can hash (PostgreSQL), empty elsewhere.

Revision ID: 0008
Revises: 0007_admin_orders
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007_admin_orders'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('body_sha256')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=False, server_default=''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE events SET body_sha256 = encode(sha256(body), 'hex')")
