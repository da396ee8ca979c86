"""service bus: catalogue, consumers, call log; group_member loses a unique constraint that repeated its key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 13:40:00
"""
from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = engine.models.base.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('bus_service',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('definition', JSON, nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['user.id'], name=op.f('fk_bus_service_updated_by_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_bus_service'))
    )
    op.create_table('bus_consumer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('permissions', JSON, nullable=False),
    sa.Column('rate_per_minute', sa.Integer(), nullable=False),
    sa.Column('run_as_id', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('last_used_at', UTC, nullable=True),
    sa.ForeignKeyConstraint(['run_as_id'], ['user.id'], name=op.f('fk_bus_consumer_run_as_id_user'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bus_consumer')),
    sa.UniqueConstraint('name', name=op.f('uq_bus_consumer_name'))
    )
    with op.batch_alter_table('bus_consumer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bus_consumer_key_prefix'), ['key_prefix'], unique=False)
    op.create_table('bus_call',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('service', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.String(length=128), nullable=False),
    sa.Column('consumer_id', sa.Integer(), nullable=True),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['consumer_id'], ['bus_consumer.id'], name=op.f('fk_bus_call_consumer_id_bus_consumer'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bus_call'))
    )
    with op.batch_alter_table('bus_call', schema=None) as batch_op:
        batch_op.create_index('ix_bus_call_at', ['at'], unique=False)
        batch_op.create_index('ix_bus_call_service_at', ['service', 'at'], unique=False)
    # SQLite databases have it; PostgreSQL never created it next to the identical primary key.
    names = {c['name'] for c in sa.inspect(op.get_bind()).get_unique_constraints('group_member')}
    if 'uq_group_member_group_id' in names:
        with op.batch_alter_table('group_member', schema=None) as batch_op:
            batch_op.drop_constraint('uq_group_member_group_id', type_='unique')


def downgrade():
    op.drop_table('bus_call')
    with op.batch_alter_table('bus_consumer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bus_consumer_key_prefix'))
    op.drop_table('bus_consumer')
    op.drop_table('bus_service')
