"""replica history in its own table; replication objects get a version (compare-and-set)
and an owner (the workflow holding the replica's claim)

Revision ID: 0003
Revises: 0002
"""
from datetime import datetime, timezone

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes
from alembic import op

import models.catalog

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _when(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def upgrade() -> None:
    changes = op.create_table(
        'replica_changes',
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('plan', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column('source_cluster', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column('source_vm', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column('from_state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('to_state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('at', models.catalog.UTCDateTime(timezone=True), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('change_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('change_id'),
    )
    op.create_index('ix_replica_changes_object', 'replica_changes', ['plan', 'source_cluster', 'source_vm', 'seq'])
    # Move each object's inline history into the table, oldest first.
    conn = op.get_bind()
    objects = sa.table('replication_objects', sa.column('plan'), sa.column('source_cluster'),
                       sa.column('source_vm'), sa.column('history', sa.JSON()))
    rows = []
    for plan, cluster, vm, history in conn.execute(sa.select(objects)).all():
        for h in history or []:
            rows.append(dict(plan=plan, source_cluster=cluster, source_vm=vm, from_state=h['from_state'],
                             to_state=h['to_state'], at=_when(h['at']), reason=(h.get('reason') or '')[:1024]))
    if rows:
        op.bulk_insert(changes, rows)
    with op.batch_alter_table('replication_objects', schema=None) as batch_op:
        batch_op.drop_column('history')
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('replication_objects', schema=None) as batch_op:
        batch_op.drop_column('owner')
        batch_op.drop_column('version')
        batch_op.add_column(sa.Column('history', sa.JSON(), nullable=False, server_default='[]'))
    op.drop_index('ix_replica_changes_object', table_name='replica_changes')
    op.drop_table('replica_changes')
