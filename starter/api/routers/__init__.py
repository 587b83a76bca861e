"""One router per noun of /v1, included by `starter.api.main.make_api` in this order (the
order of the OpenAPI document's paths). starter/client/operations.py lists every route with
its CLI command (tests/test_operations.py holds both sides to it)."""

from starter.api.routers import (
    backup_plans,
    failover,
    inventory,
    jobs,
    replicas,
    replication_plans,
    repositories,
    restore_points,
    services,
)

ROUTERS = [inventory.router, repositories.router, services.router, backup_plans.router, restore_points.router,
           replication_plans.router, replicas.router, failover.router, jobs.router]
