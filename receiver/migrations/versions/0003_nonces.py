"""events.nonce and nonces: replay protection in the transaction that stores a push, not in Redis

The unique (source, body_sha256) goes: a push's dedupe key is a function of its source and body in
every family, so it refused nothing the dedupe key did not, and each unique index costs every push
a page written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nonce', sa.String(length=64), nullable=True))
        batch_op.drop_constraint('uq_events_source_body_sha256', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_events_source_nonce'), ['source', 'nonce'])
    op.create_table('nonces',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'nonce', name=op.f('pk_nonces'))
    )
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nonces_seen_at'), ['seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nonces_seen_at'))
    op.drop_table('nonces')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_events_source_nonce'), type_='unique')
        batch_op.create_unique_constraint('uq_events_source_body_sha256', ['source', 'body_sha256'])
        batch_op.drop_column('nonce')
