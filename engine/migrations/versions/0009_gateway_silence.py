"""gateway silence: a per-gateway threshold and the indexed time the gateway's silence alarm is due

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""
from datetime import timedelta

from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

UTC = engine.models.base.UTCDateTime(timezone=True)
SILENT_AFTER_S = 300  # engine.alarms.SILENT_AFTER_S when this was written


def upgrade():
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.add_column(sa.Column('silent_after_s', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('silent_due_at', UTC, nullable=True))
        batch_op.create_index(batch_op.f('ix_gateway_silent_due_at'), ['silent_due_at'], unique=False)

    # A gateway that has reported before the upgrade is watched from its last contact, so one already silent is
    # noticed at the first scheduler pass; one that never reported stays unwatched until it does.
    gateway = sa.table('gateway', sa.column('id', sa.Integer()), sa.column('last_seen_at', UTC),
                       sa.column('silent_due_at', UTC))
    bind = op.get_bind()
    rows = bind.execute(sa.select(gateway.c.id, gateway.c.last_seen_at)
                        .where(gateway.c.last_seen_at.is_not(None))).all()
    for gateway_id, last_seen_at in rows:
        bind.execute(gateway.update().where(gateway.c.id == gateway_id)
                     .values(silent_due_at=last_seen_at + timedelta(seconds=SILENT_AFTER_S)))


def downgrade():
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_silent_due_at'))
        batch_op.drop_column('silent_due_at')
        batch_op.drop_column('silent_after_s')
