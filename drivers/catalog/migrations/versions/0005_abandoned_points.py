"""abandoned_points: point ids a backup gave up on before recording them (never recorded after)

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import models.catalog

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('abandoned_points',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('abandoned_at', models.catalog.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('abandoned_points')
