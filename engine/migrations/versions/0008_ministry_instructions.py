"""ministry instructions: each delivered instruction keyed by its digest, so a replay delivers nothing

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = engine.models.base.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('ministry_instruction',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('incident_id', sa.String(length=100), nullable=False),
    sa.Column('delivered', JSON, nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_ministry_instruction'))
    )


def downgrade():
    op.drop_table('ministry_instruction')
