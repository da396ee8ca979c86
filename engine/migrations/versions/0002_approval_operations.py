"""approval operations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 11:44:53.445617
"""
from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('opinion_phrase',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.String(length=200), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_opinion_phrase_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_opinion_phrase'))
    )
    with op.batch_alter_table('opinion_phrase', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opinion_phrase_user_id'), ['user_id'], unique=False)

    op.create_table('proxy_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal_id', sa.Integer(), nullable=False),
    sa.Column('proxy_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['principal_id'], ['user.id'], name=op.f('fk_proxy_grant_principal_id_user'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['proxy_id'], ['user.id'], name=op.f('fk_proxy_grant_proxy_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proxy_grant')),
    sa.UniqueConstraint('principal_id', 'proxy_id', name=op.f('uq_proxy_grant_principal_id'))
    )
    with op.batch_alter_table('proxy_grant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proxy_grant_proxy_id'), ['proxy_id'], unique=False)

    op.create_table('signature',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('image', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', engine.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_signature_instance_id_process_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_signature_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signature'))
    )
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signature_instance_id'), ['instance_id'], unique=False)

    op.create_table('task_copy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=36), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('from_user_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', engine.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read_at', engine.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['from_user_id'], ['user.id'], name=op.f('fk_task_copy_from_user_id_user')),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_task_copy_instance_id_process_instance'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_task_copy_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_copy'))
    )
    with op.batch_alter_table('task_copy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_copy_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_task_copy_user', ['user_id', 'created_at'], unique=False)

    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='task', nullable=False))
        batch_op.add_column(sa.Column('parent_task_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('sign_position', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('blocked', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('pending', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('origin_task_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('returned_from', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('return_to_me', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('next_action_at', engine.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reminders_sent', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_human_task_parent_task_id'), ['parent_task_id'], unique=False)
        batch_op.create_index('ix_task_next_action', ['state', 'next_action_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_human_task_owner_id_user'), 'user', ['owner_id'], ['id'])
    # The shared common opinions; users add their own.
    op.bulk_insert(sa.table("opinion_phrase", sa.column("text"), sa.column("sort_order")), [
        {"text": text, "sort_order": i} for i, text in enumerate(
            ["同意", "已阅", "拟同意", "同意，请按程序办理", "请办公室阅处", "请相关处室阅处", "请研究提出意见", "不同意"])])


def downgrade():
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_human_task_owner_id_user'), type_='foreignkey')
        batch_op.drop_index('ix_task_next_action')
        batch_op.drop_index(batch_op.f('ix_human_task_parent_task_id'))
        batch_op.drop_column('reminders_sent')
        batch_op.drop_column('next_action_at')
        batch_op.drop_column('return_to_me')
        batch_op.drop_column('returned_from')
        batch_op.drop_column('origin_task_id')
        batch_op.drop_column('pending')
        batch_op.drop_column('blocked')
        batch_op.drop_column('owner_id')
        batch_op.drop_column('sign_position')
        batch_op.drop_column('parent_task_id')
        batch_op.drop_column('kind')

    with op.batch_alter_table('task_copy', schema=None) as batch_op:
        batch_op.drop_index('ix_task_copy_user')
        batch_op.drop_index(batch_op.f('ix_task_copy_instance_id'))

    op.drop_table('task_copy')
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signature_instance_id'))

    op.drop_table('signature')
    with op.batch_alter_table('proxy_grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proxy_grant_proxy_id'))

    op.drop_table('proxy_grant')
    with op.batch_alter_table('opinion_phrase', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opinion_phrase_user_id'))

    op.drop_table('opinion_phrase')
