"""org_version: one counter that triggers bump whenever something assignment rules read changes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 11:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# table -> the columns whose update matters to assignment rules (inserts and deletes always do)
WATCHED = {
    'user': ('username', 'name', 'is_active', 'unit_id', 'region_code', 'enterprise_id'),
    'user_role': ('user_id', 'role_id'),
    'role': ('code',),
    'unit': ('code', 'parent_id', 'leader_id', 'region_code'),
    'group': ('code',),
}
BUMP = 'UPDATE org_version SET version = version + 1'


def upgrade():
    op.create_table(
        'org_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_org_version')),
    )
    op.execute('INSERT INTO org_version (id, version) VALUES (1, 0)')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE FUNCTION emflow_bump_org_version() RETURNS trigger LANGUAGE plpgsql AS '
                   f'$$ BEGIN {BUMP}; RETURN NULL; END $$')
        for table, columns in WATCHED.items():
            op.execute(f'CREATE TRIGGER org_version_bump AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF '
                       f'{", ".join(columns)} ON "{table}" FOR EACH STATEMENT '
                       f'EXECUTE FUNCTION emflow_bump_org_version()')
    else:
        for table, columns in WATCHED.items():
            for event in ('INSERT', 'DELETE', f'UPDATE OF {", ".join(columns)}'):
                op.execute(f'CREATE TRIGGER org_version_{table}_{event.split()[0].lower()} AFTER {event} '
                           f'ON "{table}" BEGIN {BUMP}; END')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for table in WATCHED:
            op.execute(f'DROP TRIGGER org_version_bump ON "{table}"')
        op.execute('DROP FUNCTION emflow_bump_org_version()')
    else:
        for table in WATCHED:
            for event in ('insert', 'delete', 'update'):
                op.execute(f'DROP TRIGGER org_version_{table}_{event}')
    op.drop_table('org_version')
