"""abdr's workflows; `ALL` is what the orchestration worker registers."""

from workflows.admin import AdminWorkflow
from workflows.backup import VMBackupWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.maintenance import RepositoryMaintenanceWorkflow
from workflows.plan_run import BackupPlanRunWorkflow, BackupPlanTickWorkflow
from workflows.restore import RestoreWorkflow

ALL: list[type] = [
    AdminWorkflow,
    BackupPlanRunWorkflow,
    BackupPlanTickWorkflow,
    HealthCheckWorkflow,
    RepositoryMaintenanceWorkflow,
    RestoreWorkflow,
    VMBackupWorkflow,
]
