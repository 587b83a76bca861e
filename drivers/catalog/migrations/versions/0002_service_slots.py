"""service slots: leases that hold a service's limits across plans and manual runs

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes
from alembic import op

import models.catalog

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('service_slots',
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('service', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('acquired_at', models.catalog.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', models.catalog.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'service', 'slot')
    )
    with op.batch_alter_table('service_slots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_slots_holder'), ['holder'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('service_slots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_slots_holder'))
    op.drop_table('service_slots')
