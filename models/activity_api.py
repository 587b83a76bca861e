"""The activity interface: one abstract class per activity class of `activities/`, each
method the activity's type name, argument and result, and no body. Workflows call
activities through these (`workflow.execute_activity_method(BackupApi.create_snapshot, ...)`),
so a wrong name or argument is a type error, not a timeout on a site's queue, and the result
type comes from the annotation; `workflows/` still imports only `models/`. Each activity
class subclasses its interface (mypy checks the overrides); tests/test_activity_api.py
checks that every method here is registered with the same name and signature.

The `admin_<operation>` activities are not here: workflows/admin.py runs them by name, from
the closed list `models.admin.ADMIN_OPS`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from temporalio import activity

from models.health import ClusterHealth, HealthCheckInput, SiteWorkerInfo
from models.inventory import GuestSigns
from models.jobs import (
    AbandonBackupInput,
    CarryBatchInput,
    CarryBatchResult,
    CleanupInput,
    CreateVMInput,
    FinishBackupInput,
    JobRecord,
    MaintenanceInput,
    MaintenanceResult,
    PlanResultInput,
    PlanRunInput,
    PowerInput,
    PrepareBackupInput,
    PrepareBackupResult,
    RecordPointInput,
    ResolvedPlan,
    ResolvedRestore,
    RestoreDisksInput,
    RestoreDisksResult,
    RestoreInput,
    RetentionInput,
    SnapshotInput,
    SnapshotRef,
    TransferInput,
    TransferResult,
)
from models.plan_pages import RunVMResults
from models.plans import VMRef
from models.replication import ReplicationObject
from models.replication_jobs import (
    CloneInput,
    EnsureReplicaInput,
    HistoryPage,
    HistoryQuery,
    ObjectChange,
    ObjectRef,
    PointQuery,
    PowerStateReply,
    PullInput,
    PullResult,
    ReplicaCarryInput,
    ReplicaCarryResult,
    ReplicaCheckInput,
    ReplicaCheckResult,
    ReplicaPoint,
    ReplicaPointRecord,
    ReplicaRetentionInput,
    ReplicationRunInput,
    ResolvedObject,
    ResolvedReplicationPlan,
    ShutdownInput,
    SnapshotDrop,
    VMAt,
)
from models.retention import ExpiredPoints
from models.services import RepositorySpec


def activity_name(method: Callable[..., Any]) -> str:
    """The activity type name of an interface method (what histories record)."""
    name = activity._Definition.must_from_callable(method).name
    if name is None:  # a dynamic activity: none is called by reference
        raise TypeError(f"{method!r} is a dynamic activity, with no type name")
    return name


# -- site queue ------------------------------------------------------------------------------

class BackupApi(ABC):
    """activities/backup.py"""

    @activity.defn(name="find_vm")
    @abstractmethod
    def find_vm(self, vm: VMRef) -> str: ...

    @activity.defn(name="prepare_backup")
    @abstractmethod
    def prepare_backup(self, inp: PrepareBackupInput) -> PrepareBackupResult: ...

    @activity.defn(name="create_snapshot")
    @abstractmethod
    def create_snapshot(self, inp: SnapshotInput) -> SnapshotRef: ...

    @activity.defn(name="transfer_backup")
    @abstractmethod
    def transfer_backup(self, inp: TransferInput) -> TransferResult: ...

    @activity.defn(name="cleanup_backup")
    @abstractmethod
    def cleanup_backup(self, inp: CleanupInput) -> None: ...

    @activity.defn(name="release_snapshot")
    @abstractmethod
    def release_snapshot(self, inp: CleanupInput) -> None: ...

    @activity.defn(name="finish_backup")
    @abstractmethod
    def finish_backup(self, inp: FinishBackupInput) -> None: ...

    @activity.defn(name="abandon_backup")
    @abstractmethod
    def abandon_backup(self, inp: AbandonBackupInput) -> bool: ...

    @activity.defn(name="apply_retention")
    @abstractmethod
    def apply_retention(self, inp: RetentionInput) -> ExpiredPoints: ...

    @activity.defn(name="carry_unchanged")
    @abstractmethod
    def carry_unchanged(self, inp: CarryBatchInput) -> CarryBatchResult: ...


class RestoreApi(ABC):
    """activities/restore.py"""

    @activity.defn(name="set_power")
    @abstractmethod
    def set_power(self, inp: PowerInput) -> None: ...

    @activity.defn(name="apply_config")
    @abstractmethod
    def apply_config(self, inp: SnapshotRef) -> None: ...

    @activity.defn(name="create_vm_for_restore")
    @abstractmethod
    def create_vm_for_restore(self, inp: CreateVMInput) -> SnapshotRef: ...

    @activity.defn(name="restore_disks")
    @abstractmethod
    def restore_disks(self, inp: RestoreDisksInput) -> RestoreDisksResult: ...


class ReplicationApi(ABC):
    """activities/replication.py"""

    @activity.defn(name="ensure_replica")
    @abstractmethod
    def ensure_replica(self, inp: EnsureReplicaInput) -> str: ...

    @activity.defn(name="pull_extents")
    @abstractmethod
    def pull_extents(self, inp: PullInput) -> PullResult: ...

    @activity.defn(name="drop_snapshot")
    @abstractmethod
    def drop_snapshot(self, inp: SnapshotDrop) -> None: ...

    @activity.defn(name="rollback_vm")
    @abstractmethod
    def rollback_vm(self, at: VMAt) -> None: ...

    @activity.defn(name="power_state")
    @abstractmethod
    def power_state(self, at: VMAt) -> PowerStateReply: ...

    @activity.defn(name="shutdown_vm")
    @abstractmethod
    def shutdown_vm(self, inp: ShutdownInput) -> PowerStateReply: ...

    @activity.defn(name="clone_vm_at")
    @abstractmethod
    def clone_vm_at(self, inp: CloneInput) -> str: ...

    @activity.defn(name="delete_vm")
    @abstractmethod
    def delete_vm(self, at: VMAt) -> None: ...

    @activity.defn(name="guest_signs")
    @abstractmethod
    def guest_signs(self, at: VMAt) -> GuestSigns: ...

    @activity.defn(name="disk_digest")
    @abstractmethod
    def disk_digest(self, at: VMAt) -> dict[str, str]: ...

    @activity.defn(name="replica_retention")
    @abstractmethod
    def replica_retention(self, inp: ReplicaRetentionInput) -> ExpiredPoints: ...

    @activity.defn(name="check_sources_unchanged")
    @abstractmethod
    def check_sources_unchanged(self, inp: ReplicaCheckInput) -> ReplicaCheckResult: ...

    @activity.defn(name="carry_replicas")
    @abstractmethod
    def carry_replicas(self, inp: ReplicaCarryInput) -> ReplicaCarryResult: ...


class SiteAdminApi(ABC):
    """activities/site_admin.py (its `admin_*` activities run by name: workflows/admin.py)"""

    @activity.defn(name="maintain_repository")
    @abstractmethod
    def maintain_repository(self, inp: MaintenanceInput) -> MaintenanceResult: ...


class HealthApi(ABC):
    """activities/health.py"""

    @activity.defn(name="site_worker_info")
    @abstractmethod
    def site_worker_info(self, req: HealthCheckInput) -> SiteWorkerInfo: ...


class ClusterHealthApi(ABC):
    """activities/health.py (ClusterHealthActivities)"""

    @activity.defn(name="cluster_health")
    @abstractmethod
    def cluster_health(self, req: HealthCheckInput) -> list[ClusterHealth]: ...


# -- workflow queue (the catalog's) ----------------------------------------------------------

class CatalogApi(ABC):
    """activities/catalog.py"""

    @activity.defn(name="resolve_plan")
    @abstractmethod
    def resolve_plan(self, inp: PlanRunInput) -> ResolvedPlan: ...

    @activity.defn(name="record_point")
    @abstractmethod
    def record_point(self, inp: RecordPointInput) -> None: ...

    @activity.defn(name="set_plan_result")
    @abstractmethod
    def set_plan_result(self, inp: PlanResultInput) -> None: ...

    @activity.defn(name="record_job")
    @abstractmethod
    def record_job(self, job: JobRecord) -> None: ...

    @activity.defn(name="record_run_vms")
    @abstractmethod
    def record_run_vms(self, inp: RunVMResults) -> None: ...

    @activity.defn(name="get_repository")
    @abstractmethod
    def get_repository(self, inp: MaintenanceInput) -> RepositorySpec: ...

    @activity.defn(name="resolve_restore")
    @abstractmethod
    def resolve_restore(self, inp: RestoreInput) -> ResolvedRestore: ...


class ReplicationCatalogApi(ABC):
    """activities/replication_catalog.py"""

    @activity.defn(name="create_reverse_plan")
    @abstractmethod
    async def create_reverse_plan(self, ref: ObjectRef) -> str: ...

    @activity.defn(name="resolve_replication_plan")
    @abstractmethod
    def resolve_replication_plan(self, inp: ReplicationRunInput) -> ResolvedReplicationPlan: ...

    @activity.defn(name="set_replication_plan_result")
    @abstractmethod
    def set_replication_plan_result(self, inp: PlanResultInput) -> None: ...

    @activity.defn(name="get_replica")
    @abstractmethod
    def get_replica(self, ref: ObjectRef) -> ResolvedObject: ...

    @activity.defn(name="change_replica")
    @abstractmethod
    def change_replica(self, ch: ObjectChange) -> ReplicationObject: ...

    @activity.defn(name="replica_history")
    @abstractmethod
    def replica_history(self, q: HistoryQuery) -> HistoryPage: ...

    @activity.defn(name="record_replica_point")
    @abstractmethod
    def record_replica_point(self, r: ReplicaPointRecord) -> None: ...

    @activity.defn(name="find_replica_point")
    @abstractmethod
    def find_replica_point(self, q: PointQuery) -> ReplicaPoint: ...

    @activity.defn(name="exclude_from_plan")
    @abstractmethod
    async def exclude_from_plan(self, ref: ObjectRef) -> None: ...

    @activity.defn(name="release_batch_claims")
    @abstractmethod
    def release_batch_claims(self, inp: ReplicaCarryInput) -> None: ...


# Which worker serves each interface: a site's (its queue) or the catalog's (the workflow queue).
SITE_APIS: list[type] = [BackupApi, RestoreApi, ReplicationApi, SiteAdminApi, HealthApi, ClusterHealthApi]
CATALOG_APIS: list[type] = [CatalogApi, ReplicationCatalogApi]
