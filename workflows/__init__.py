"""abdr's workflows; `ALL` is what the orchestration worker registers."""

from workflows.admin import AdminWorkflow
from workflows.admin_service import AdminServiceWorkflow
from workflows.backup import VMBackupWorkflow
from workflows.drill import FailoverTestWorkflow
from workflows.failback import FailbackWorkflow, PermanentFailoverWorkflow
from workflows.failover import FailoverWorkflow, UndoFailoverWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.maintenance import RepositoryMaintenanceWorkflow
from workflows.plan_run import BackupPlanRunWorkflow, BackupPlanTickWorkflow
from workflows.replication import ReplicateWorkflow
from workflows.replication_plan import ReplicationPlanRunWorkflow, ReplicationPlanTickWorkflow
from workflows.restore import RestoreWorkflow

ALL: list[type] = [
    AdminServiceWorkflow,
    AdminWorkflow,  # runs recorded before the admin service (and any client still starting it)
    BackupPlanRunWorkflow,
    BackupPlanTickWorkflow,
    FailbackWorkflow,
    FailoverTestWorkflow,
    FailoverWorkflow,
    HealthCheckWorkflow,
    PermanentFailoverWorkflow,
    ReplicateWorkflow,
    ReplicationPlanRunWorkflow,
    ReplicationPlanTickWorkflow,
    RepositoryMaintenanceWorkflow,
    RestoreWorkflow,
    UndoFailoverWorkflow,
    VMBackupWorkflow,
]
