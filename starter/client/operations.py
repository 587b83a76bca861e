"""abdr's operations, in one list: each one's `AbdrClient` method, its CLI command and its REST
route. tests/test_operations.py walks the typer app and the FastAPI app against this list,
so an operation added to one interface and not the other fails the suite, unless it is
here with the reason the other interface has none (`why`)."""

from __future__ import annotations

from typing import NamedTuple


class Operation(NamedTuple):
    client: str | None  # the AbdrClient method it calls (None: it is not a call of the client)
    cli: str | None  # the command path, "backup-plan run" (None: REST only)
    rest: str | None  # "METHOD /path" as FastAPI routes it (None: CLI only)
    why: str = ""  # for an operation on one side only: why the other has none


OPERATIONS: tuple[Operation, ...] = (
    # -- the stack and files on the operator's machine: CLI only -----------------------------------
    Operation(None, "up", None, "runs Temporal, the catalog and the workers in the foreground: the REST API "
                                "runs on a stack, it cannot start one"),
    Operation(None, "api", None, "serves this REST API"),
    Operation(None, "aoc-sim", None, "runs the AOC simulator (a test double of a vendor's AOC) in the foreground: "
                                     "no abdr operation"),
    Operation(None, "status", None, "checks from the operator's machine that Temporal, the catalog and the site "
                                    "workers answer; a caller of the API learns that from its answers (503)"),
    Operation(None, "apply", None, "reads a YAML file on the operator's machine and makes each entry with the "
                                   "create/update calls the REST API has one by one"),
    Operation(None, "vm import", None, "a data-loading tool: runs in the CLI's process on a local cluster's "
                                       "directory, not through a worker"),
    Operation(None, "vm write", None, "a data-loading tool (the demo's and the tests' guest writes): runs in "
                                      "the CLI's process on a local cluster's directory"),
    # -- inventory -------------------------------------------------------------------------------
    Operation("add_site", "site add", "POST /v1/sites"),
    Operation("list_sites", "site list", "GET /v1/sites"),
    Operation("add_cluster", "cluster add", "POST /v1/clusters"),
    Operation("list_clusters", "cluster list", "GET /v1/clusters"),
    Operation("list_vms", "vm list", "GET /v1/clusters/{cluster}/vms"),
    Operation("start_vm", "vm start", "POST /v1/clusters/{cluster}/vms/{vm}/start"),
    Operation("stop_vm", "vm stop", "POST /v1/clusters/{cluster}/vms/{vm}/stop"),
    # The file is written by the site's worker (as from the CLI), at a path the worker sees.
    Operation("export_disk", "vm export", "POST /v1/clusters/{cluster}/vms/{vm}/export"),
    # -- services --------------------------------------------------------------------------------
    Operation("list_services", "service show", "GET /v1/services"),
    Operation("put_service", "service set", "PUT /v1/services/backup/{name}"),
    Operation("put_service", "service set", "PUT /v1/services/replication/{name}"),
    # -- repositories ----------------------------------------------------------------------------
    Operation("create_repository", "repository create", "POST /v1/repositories"),
    Operation("list_repositories", "repository list", "GET /v1/repositories"),
    Operation("add_repository_key", "repository add-key", "POST /v1/repositories/{name}/key"),
    Operation("maintain_repository", "repository verify", "POST /v1/repositories/{name}/verify"),
    Operation("repository_findings", "repository findings", "GET /v1/repositories/{name}/findings"),
    # -- backup plans, restore points, restore ---------------------------------------------------
    Operation("list_backup_plans", "backup-plan list", "GET /v1/backup-plans"),
    Operation("create_backup_plan", "backup-plan create", "POST /v1/backup-plans"),
    Operation("get_backup_plan", "backup-plan show", "GET /v1/backup-plans/{name}"),
    Operation("update_backup_plan", "backup-plan update", "PUT /v1/backup-plans/{name}"),
    Operation("delete_backup_plan", "backup-plan delete", "DELETE /v1/backup-plans/{name}"),
    Operation("set_backup_plan_paused", "backup-plan pause", "POST /v1/backup-plans/{name}/pause"),
    Operation("set_backup_plan_paused", "backup-plan resume", "POST /v1/backup-plans/{name}/resume"),
    Operation("run_backup_plan", "backup-plan run", "POST /v1/backup-plans/{name}/run"),
    Operation("list_restore_points", "restore-point list", "GET /v1/restore-points"),
    Operation("get_restore_point", "restore-point show", "GET /v1/restore-points/{point_id}"),
    Operation("delete_restore_point", "restore-point delete", "DELETE /v1/restore-points/{point_id}"),
    Operation("restore", "restore", "POST /v1/restores"),
    # -- replication -----------------------------------------------------------------------------
    Operation("list_replication_plans", "replication-plan list", "GET /v1/replication-plans"),
    Operation("create_replication_plan", "replication-plan create", "POST /v1/replication-plans"),
    Operation("get_replication_plan", "replication-plan show", "GET /v1/replication-plans/{name}"),
    Operation("update_replication_plan", "replication-plan update", "PUT /v1/replication-plans/{name}"),
    Operation("delete_replication_plan", "replication-plan delete", "DELETE /v1/replication-plans/{name}"),
    Operation("set_replication_plan_paused", "replication-plan pause", "POST /v1/replication-plans/{name}/pause"),
    Operation("set_replication_plan_paused", "replication-plan resume", "POST /v1/replication-plans/{name}/resume"),
    Operation("run_replication_plan", "replication-plan run", "POST /v1/replication-plans/{name}/run"),
    Operation("list_replicas", "replica list", "GET /v1/replicas"),
    Operation("replica_history", "replica history", "GET /v1/replicas/{plan}/{vm}/history"),
    Operation("replica_points", "replica points", "GET /v1/replicas/{plan}/{vm}/points"),
    # -- disaster recovery -----------------------------------------------------------------------
    Operation("failover", "failover", "POST /v1/failover"),
    Operation("undo_failover", "failover undo", "POST /v1/failover/undo"),
    Operation("start_failover_test", "failover-test start", "POST /v1/failover-tests"),
    Operation("cleanup_failover_test", "failover-test cleanup", "POST /v1/failover-tests/{plan}/{vm}/cleanup"),
    Operation("failback", "failback", "POST /v1/failback"),
    Operation("permanent_failover", "permanent-failover", "POST /v1/permanent-failover"),
    # -- jobs ------------------------------------------------------------------------------------
    Operation("list_jobs", "job list", "GET /v1/jobs"),
    Operation("describe_job", "job show", "GET /v1/jobs/{workflow_id}"),
    Operation("cancel_job", "job cancel", "POST /v1/jobs/{workflow_id}/cancel"),
)
