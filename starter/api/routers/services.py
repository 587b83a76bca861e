"""/v1/services: each site's backup and replication services and their limits (parallel
jobs, IOPS, bandwidth, retries); runs that start after a change use it."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.admin import Services
from models.services import BackupService, ReplicationService
from starter.api import examples as ex
from starter.api.dependencies import C, NamePath, SiteQuery, same_name
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/services")
async def list_services(c: C, site: SiteQuery = None) -> Services:
    """The services and their limits (a site with none configured shows its defaults)."""
    return await c.list_services(site)


@router.put("/v1/services/backup/{name}")
async def put_backup_service(name: NamePath, svc: Annotated[BackupService, Body(openapi_examples=ex.BACKUP_SERVICE)],
                             c: C) -> BackupService:
    """Set a backup service's limits, all of them (a field left out takes its default)."""
    same_name(name, svc.name, "service")
    return await c.put_service(svc)  # type: ignore[return-value]  # the kind it was given


@router.put("/v1/services/replication/{name}")
async def put_replication_service(
        name: NamePath, svc: Annotated[ReplicationService, Body(openapi_examples=ex.REPLICATION_SERVICE)],
        c: C) -> ReplicationService:
    """Set a replication service's limits, all of them (a field left out takes its default)."""
    same_name(name, svc.name, "service")
    return await c.put_service(svc)  # type: ignore[return-value]  # the kind it was given
