"""monitoring: gateways, devices, points, readings, alarms, alarm events, aggregation rules

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:00:00
"""
from alembic import op
import sqlalchemy as sa
import engine.models.base  # noqa: F401 - column types
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = engine.models.base.UTCDateTime(timezone=True)

# GB 51108-2015 §5.5.4 (tailings dams): within one monitored item 4 blue points make it yellow,
# 3 yellow make it orange, 2 orange make it red. Grades: 1 red, 2 orange, 3 yellow, 4 blue.
TAILINGS_RULES = [
    {'name': 'GB 51108 四个蓝色测点升黄色', 'industry': '尾矿库', 'grade': 4, 'count': 4, 'result_grade': 3, 'enabled': True},
    {'name': 'GB 51108 三个黄色测点升橙色', 'industry': '尾矿库', 'grade': 3, 'count': 3, 'result_grade': 2, 'enabled': True},
    {'name': 'GB 51108 两个橙色测点升红色', 'industry': '尾矿库', 'grade': 2, 'count': 2, 'result_grade': 1, 'enabled': True},
]


def upgrade():
    op.create_table('aggregation_rule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('industry', sa.String(length=50), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('result_grade', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aggregation_rule'))
    )
    op.create_table('gateway',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('last_seen_at', UTC, nullable=True),
    sa.Column('health', JSON, nullable=True),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_gateway_enterprise_id_enterprise')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gateway')),
    sa.UniqueConstraint('code', name=op.f('uq_gateway_code')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_gateway_token_hash'))
    )
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_enterprise_id'), ['enterprise_id'], unique=False)

    op.create_table('monitored_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_monitored_item_enterprise_id_enterprise')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitored_item')),
    sa.UniqueConstraint('enterprise_id', 'code', name=op.f('uq_monitored_item_enterprise_id'))
    )
    with op.batch_alter_table('monitored_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_monitored_item_enterprise_id'), ['enterprise_id'], unique=False)

    op.create_table('device',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gateway_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_at', UTC, nullable=True),
    sa.ForeignKeyConstraint(['gateway_id'], ['gateway.id'], name=op.f('fk_device_gateway_id_gateway'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device')),
    sa.UniqueConstraint('gateway_id', 'name', name=op.f('uq_device_gateway_id'))
    )
    op.create_table('point',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gateway_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('indicator_code', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('lolo', sa.Float(), nullable=True),
    sa.Column('lolo_grade', sa.Integer(), nullable=True),
    sa.Column('lo', sa.Float(), nullable=True),
    sa.Column('lo_grade', sa.Integer(), nullable=True),
    sa.Column('hi', sa.Float(), nullable=True),
    sa.Column('hi_grade', sa.Integer(), nullable=True),
    sa.Column('hihi', sa.Float(), nullable=True),
    sa.Column('hihi_grade', sa.Integer(), nullable=True),
    sa.Column('deadband', sa.Float(), nullable=False),
    sa.Column('on_delay_s', sa.Float(), nullable=False),
    sa.Column('off_delay_s', sa.Float(), nullable=False),
    sa.Column('shelved_until', UTC, nullable=True),
    sa.Column('suppressed', sa.Boolean(), nullable=False),
    sa.Column('out_of_service', sa.Boolean(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=True),
    sa.Column('last_value', sa.Float(), nullable=True),
    sa.Column('last_ts', UTC, nullable=True),
    sa.Column('last_quality', sa.String(length=16), nullable=True),
    sa.Column('evaluated_seq', sa.BigInteger(), nullable=True),
    sa.Column('eval_state', JSON, nullable=True),
    sa.Column('eval_due_at', UTC, nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_point_device_id_device'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_point_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['gateway_id'], ['gateway.id'], name=op.f('fk_point_gateway_id_gateway'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['item_id'], ['monitored_item.id'], name=op.f('fk_point_item_id_monitored_item'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point')),
    sa.UniqueConstraint('gateway_id', 'name', name=op.f('uq_point_gateway_id'))
    )
    with op.batch_alter_table('point', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_point_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_point_eval_due_at'), ['eval_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_point_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_point_item_id'), ['item_id'], unique=False)

    op.create_table('alarm',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('open_key', sa.String(length=80), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('condition', sa.String(length=16), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=True),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('enterprise_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('industry', sa.String(length=50), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('limit', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('raised_at', UTC, nullable=False),
    sa.Column('acked_at', UTC, nullable=True),
    sa.Column('acked_by_id', sa.Integer(), nullable=True),
    sa.Column('rtn_at', UTC, nullable=True),
    sa.Column('closed_at', UTC, nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('activations', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['acked_by_id'], ['user.id'], name=op.f('fk_alarm_acked_by_id_user')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['user.id'], name=op.f('fk_alarm_closed_by_id_user')),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_alarm_device_id_device'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_alarm_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_alarm_instance_id_process_instance'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['item_id'], ['monitored_item.id'], name=op.f('fk_alarm_item_id_monitored_item'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['point_id'], ['point.id'], name=op.f('fk_alarm_point_id_point'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarm')),
    sa.UniqueConstraint('open_key', name=op.f('uq_alarm_open_key'))
    )
    with op.batch_alter_table('alarm', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alarm_device_id'), ['device_id'], unique=False)
        batch_op.create_index('ix_alarm_enterprise_raised', ['enterprise_id', 'raised_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarm_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarm_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarm_point_id'), ['point_id'], unique=False)
        batch_op.create_index('ix_alarm_region_raised', ['region_code', 'raised_at'], unique=False)

    op.create_table('reading',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('reading_id', sa.String(length=64), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('ts', UTC, nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('quality', sa.String(length=16), nullable=False),
    sa.Column('historical', sa.Boolean(), nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['point_id'], ['point.id'], name=op.f('fk_reading_point_id_point'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reading')),
    sa.UniqueConstraint('reading_id', name=op.f('uq_reading_reading_id'))
    )
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.create_index('ix_reading_point_ts', ['point_id', 'ts'], unique=False)

    op.create_table('alarm_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alarm_id', sa.Integer(), nullable=True),
    sa.Column('point_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=100), nullable=False),
    sa.Column('detail', JSON, nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['user.id'], name=op.f('fk_alarm_event_actor_id_user')),
    sa.ForeignKeyConstraint(['alarm_id'], ['alarm.id'], name=op.f('fk_alarm_event_alarm_id_alarm'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['point_id'], ['point.id'], name=op.f('fk_alarm_event_point_id_point'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarm_event'))
    )
    with op.batch_alter_table('alarm_event', schema=None) as batch_op:
        batch_op.create_index('ix_alarm_event_alarm', ['alarm_id', 'id'], unique=False)
        batch_op.create_index('ix_alarm_event_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarm_event_point_id'), ['point_id'], unique=False)

    with op.batch_alter_table('enterprise', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duty_user_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_enterprise_duty_user_id_user'), 'user', ['duty_user_id'], ['id'], use_alter=True)

    rules = sa.table('aggregation_rule', sa.column('name', sa.String), sa.column('industry', sa.String),
                     sa.column('grade', sa.Integer), sa.column('count', sa.Integer),
                     sa.column('result_grade', sa.Integer), sa.column('enabled', sa.Boolean))
    op.bulk_insert(rules, TAILINGS_RULES)


def downgrade():
    with op.batch_alter_table('enterprise', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_enterprise_duty_user_id_user'), type_='foreignkey')
        batch_op.drop_column('duty_user_id')

    with op.batch_alter_table('alarm_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alarm_event_point_id'))
        batch_op.drop_index('ix_alarm_event_at')
        batch_op.drop_index('ix_alarm_event_alarm')

    op.drop_table('alarm_event')
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.drop_index('ix_reading_point_ts')

    op.drop_table('reading')
    with op.batch_alter_table('alarm', schema=None) as batch_op:
        batch_op.drop_index('ix_alarm_region_raised')
        batch_op.drop_index(batch_op.f('ix_alarm_point_id'))
        batch_op.drop_index(batch_op.f('ix_alarm_item_id'))
        batch_op.drop_index(batch_op.f('ix_alarm_instance_id'))
        batch_op.drop_index('ix_alarm_enterprise_raised')
        batch_op.drop_index(batch_op.f('ix_alarm_device_id'))

    op.drop_table('alarm')
    with op.batch_alter_table('point', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_point_item_id'))
        batch_op.drop_index(batch_op.f('ix_point_enterprise_id'))
        batch_op.drop_index(batch_op.f('ix_point_device_id'))
        batch_op.drop_index(batch_op.f('ix_point_eval_due_at'))

    op.drop_table('point')
    op.drop_table('device')
    with op.batch_alter_table('monitored_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_monitored_item_enterprise_id'))

    op.drop_table('monitored_item')
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_enterprise_id'))

    op.drop_table('gateway')
    op.drop_table('aggregation_rule')
