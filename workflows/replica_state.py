"""A replica's state and claim, changed only by compare-and-set in the catalog (one
transaction, checked against the state and claim the caller expects). Every DR operation
claims first, then acts, and lets go with the state that is true at its end; a refusal
leaves everything as it was. Deterministic; imports only temporalio + models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ReplicationCatalogApi
    from models.replication import ReplicaState, ReplicationObject
    from models.replication_jobs import Claim, ObjectChange

from workflows.backup import failure_text
from workflows.common import catalog
from workflows.sites import refuse


def me() -> str:
    """The claim owner: this workflow (its id names the operation and the VM)."""
    return workflow.info().workflow_id


async def change(plan: str, vm: str, to: ReplicaState | None = None, reason: str = "", *,
                 expect: Iterable[ReplicaState] | None = None, claim: Claim | None = None,
                 owner: str | None = None, **updates: Any) -> ReplicationObject:
    """One compare-and-set change (see ObjectChange); a retried activity applies it once."""
    last = updates.pop("last_point_at", None)
    return await catalog(ReplicationCatalogApi.change_replica, ObjectChange(
        plan=plan, vm=vm, to=to, reason=reason, at=workflow.now(), updates=updates, last_point_at=last,
        expect=list(expect) if expect is not None else None, claim=claim, owner=owner or me(),
        change_id=f"{me()}/{workflow.uuid4()}"))


async def claim(plan: str, vm: str, expect: Iterable[ReplicaState], to: ReplicaState | None = None,
                reason: str = "", owner: str | None = None) -> ReplicationObject:
    """Take the replica for this operation: it must be in one of `expect` and unclaimed."""
    return await change(plan, vm, to, reason, expect=expect, claim=Claim.TAKE, owner=owner)


async def release(plan: str, vm: str, to: ReplicaState | None = None, reason: str = "",
                  owner: str | None = None, **updates: Any) -> ReplicationObject:
    """Let go of the replica, moving it `to` (and setting refs) in the same transaction."""
    return await change(plan, vm, to, reason, claim=Claim.RELEASE, owner=owner, **updates)


async def hold(plan: str, vm: str, to: ReplicaState | None = None, reason: str = "",
               owner: str | None = None, **updates: Any) -> ReplicationObject:
    """Change the replica while keeping the claim (refused if the claim is not ours)."""
    return await change(plan, vm, to, reason, claim=Claim.HOLD, owner=owner, **updates)


# -- the opening frame every DR operation shares ---------------------------------------------

def require_state(obj: ReplicationObject, allowed: Iterable[ReplicaState], doing: str) -> None:
    """Refuse, having changed nothing, unless the replica is in one of `allowed`."""
    allowed = list(allowed)
    if obj.state not in allowed:
        raise refuse(f"cannot {doing} {obj.source}: its replica is {obj.state} "
                     f"(needs {' or '.join(s.value for s in allowed)})")


async def claim_or_refuse(obj: ReplicationObject, expect: Iterable[ReplicaState], doing: str,
                          to: ReplicaState | None = None, reason: str = "") -> ReplicationObject:
    """Claim the replica for this operation; a replica another operation changed or claimed
    meanwhile is a refusal (StateConflict) that changed nothing."""
    try:
        return await claim(obj.plan, obj.source.vm, expect, to, reason or doing)
    except ActivityError as e:
        raise refuse(f"{doing} of {obj.source} refused, nothing was changed: {failure_text(e)}",
                     "StateConflict") from None
