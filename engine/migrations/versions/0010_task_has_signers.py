"""human tasks remember whether signers were ever added to them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('has_signers', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE human_task SET has_signers = TRUE WHERE id IN "
               "(SELECT parent_task_id FROM human_task WHERE parent_task_id IS NOT NULL)")


def downgrade():
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_column('has_signers')
