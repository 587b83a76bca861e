"""Replication objects in the catalog: compare-and-set changes of a replica's state and
claim, and its history in a table of its own (paged, never part of the object)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from drivers.catalog.errors import ConcurrentChange, NotFound, StateConflict
from models.catalog import ReplicaChangeRow, ReplicationObjectRow
from models.plans import VMRef
from models.replication import ReplicaState, ReplicationObject, StateChange, check_transition
from models.replication_jobs import Claim, ObjectChange

OBJECT_REFS = ("source_vm_id", "replica_vm_id", "source_snapshot", "replica_point", "failover_snapshot")


def object_of(r: ReplicationObjectRow) -> ReplicationObject:
    return ReplicationObject(
        plan=r.plan, source=VMRef(cluster=r.source_cluster, vm=r.source_vm),
        replica=VMRef(cluster=r.replica_cluster, vm=r.replica_vm), state=ReplicaState(r.state),
        version=r.version, owner=r.owner, last_point_at=r.last_point_at,
        **{k: getattr(r, k) for k in OBJECT_REFS})


def check_change(obj: ReplicationObject, ch: ObjectChange) -> None:
    """Everything a change expects of the object as read; raises StateConflict or ValueError."""
    unknown = set(ch.updates) - set(OBJECT_REFS)
    if unknown:
        raise ValueError(f"not a replication object reference: {sorted(unknown)}")
    if ch.expect is not None and obj.state not in ch.expect:
        wanted = " or ".join(ch.expect)
        raise StateConflict(f"replica {obj.replica} is {obj.state}, not {wanted}"
                            + (f" (held by {obj.owner})" if obj.owner else ""))
    if ch.claim == Claim.TAKE and obj.owner not in (None, ch.owner):
        raise StateConflict(f"replica {obj.replica} is busy: {obj.owner} holds it")
    if ch.claim in (Claim.HOLD, Claim.RELEASE) and obj.owner != ch.owner:
        raise StateConflict(f"replica {obj.replica} is not held by {ch.owner}"
                            + (f" but by {obj.owner}" if obj.owner else ""))
    if ch.to is not None and ch.to != obj.state:
        check_transition(obj.replica, obj.state, ch.to)


class ReplicaObjects:
    """Mixed into the Catalog: needs its `session()`."""

    session: Any  # the Catalog's: a context manager giving a Session that commits on exit

    def _object_row(self, s: Session, plan: str, vm: str) -> ReplicationObjectRow:
        row = s.exec(select(ReplicationObjectRow).where(ReplicationObjectRow.plan == plan,
                                                        ReplicationObjectRow.source_vm == vm)).first()
        if row is None:
            raise NotFound(f"VM {vm!r} is not protected by replication plan {plan!r}")
        return row

    def replication_object(self, plan: str, vm: str) -> ReplicationObject:
        """The object of `plan` whose source VM is named `vm`."""
        with self.session() as s:
            return object_of(self._object_row(s, plan, vm))

    def replication_objects(self, plan: str | None = None) -> list[ReplicationObject]:
        with self.session() as s:
            q = select(ReplicationObjectRow)
            if plan:
                q = q.where(ReplicationObjectRow.plan == plan)
            return [object_of(r) for r in s.exec(q.order_by(ReplicationObjectRow.source_vm)).all()]

    def change_replication_object(self, ch: ObjectChange) -> ReplicationObject:
        """Apply one compare-and-set change (see ObjectChange) in one transaction: the
        expected state and claim are checked against the row as read, and the row is
        written only if its version is still the one read. A change already applied (same
        `change_id`) returns the object as it is."""
        with self.session() as s:
            row = self._object_row(s, ch.plan, ch.vm)
            if ch.change_id and s.exec(select(ReplicaChangeRow.seq).where(
                    ReplicaChangeRow.change_id == ch.change_id)).first() is not None:
                return object_of(row)
            obj = object_of(row)
            check_change(obj, ch)
            values: dict[str, Any] = dict(ch.updates)
            if ch.last_point_at is not None:
                values["last_point_at"] = ch.last_point_at
            if ch.to is not None:
                values["state"] = ch.to.value
            if ch.claim == Claim.TAKE:
                values["owner"] = ch.owner
            elif ch.claim == Claim.RELEASE:
                values["owner"] = None
            done = s.execute(update(ReplicationObjectRow).where(
                col(ReplicationObjectRow.plan) == row.plan, col(ReplicationObjectRow.source_cluster) == row.source_cluster,
                col(ReplicationObjectRow.source_vm) == row.source_vm, col(ReplicationObjectRow.version) == obj.version,
            ).values(**values, version=obj.version + 1))
            if done.rowcount != 1:
                raise ConcurrentChange(f"replica {obj.replica} was changed by another operation meanwhile; "
                                       "the change is retried against its new state")
            moved = ch.to is not None and ch.to != obj.state
            if moved or ch.claim in (Claim.TAKE, Claim.RELEASE) or ch.change_id:
                s.add(ReplicaChangeRow(plan=row.plan, source_cluster=row.source_cluster, source_vm=row.source_vm,
                                       from_state=obj.state.value, to_state=(ch.to or obj.state).value, at=ch.at,
                                       reason=ch.reason[:1024], owner=ch.owner, change_id=ch.change_id))
            s.flush()
            s.refresh(row)
            return object_of(row)

    def replica_history(self, plan: str, vm: str, limit: int = 50, before: int | None = None
                        ) -> tuple[list[tuple[int, StateChange]], int]:
        """A page of a replica's history, newest first (with each entry's sequence number,
        to page on), and the number of entries in all."""
        with self.session() as s:
            row = self._object_row(s, plan, vm)
            key = (ReplicaChangeRow.plan == row.plan, ReplicaChangeRow.source_cluster == row.source_cluster,
                   ReplicaChangeRow.source_vm == row.source_vm)
            total = s.exec(select(func.count()).select_from(ReplicaChangeRow).where(*key)).one()
            q = select(ReplicaChangeRow).where(*key)
            if before is not None:
                q = q.where(col(ReplicaChangeRow.seq) < before)
            rows = s.exec(q.order_by(col(ReplicaChangeRow.seq).desc()).limit(limit)).all()
            page = [(r.seq or 0, StateChange(from_state=ReplicaState(r.from_state), to_state=ReplicaState(r.to_state),
                                             at=r.at, reason=r.reason, owner=r.owner)) for r in rows]
            return page, int(total)

