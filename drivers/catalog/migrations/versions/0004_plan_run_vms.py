"""plan_run_vms: per-VM results of plan runs (read a page at a time)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plan_run_vms',
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('plan', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('vm', sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('workflow_id', 'run_id', 'index')
    )


def downgrade() -> None:
    op.drop_table('plan_run_vms')
