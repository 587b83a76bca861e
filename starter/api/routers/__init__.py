"""One router per noun of /v1, included by `starter.api.main.make_api` in this order (the
order of the OpenAPI document's paths)."""

from starter.api.routers import backup_plans, failover, jobs, replicas, replication_plans, restore_points

ROUTERS = [backup_plans.router, restore_points.router, replication_plans.router, replicas.router,
           failover.router, jobs.router]
