"""oa: received OA documents (one instance per OA document id) and the polling cursor

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 18:00:00
"""
from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UTC = engine.models.base.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('oa_document',
    sa.Column('oa_id', sa.String(length=128), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'],
                            name=op.f('fk_oa_document_instance_id_process_instance'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('oa_id', name=op.f('pk_oa_document'))
    )
    op.create_table('oa_poll_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('polled_at', UTC, nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_oa_poll_state'))
    )


def downgrade():
    op.drop_table('oa_poll_state')
    op.drop_table('oa_document')
