"""/v1/sites and /v1/clusters: the failure domains, their clusters and the clusters' VMs
(listed, started and stopped, and a disk exported, each by the cluster's site worker)."""

from typing import Annotated

from fastapi import APIRouter, Body, Query

from models.admin import STOP_TIMEOUT_MAX_S, ExportedDisk
from models.inventory import VM, Cluster, Site, SiteSpec
from models.requests import DiskExportRequest
from starter.api import examples as ex
from starter.api.dependencies import C, ClusterPath, SiteQuery, VMPath
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/sites")
async def list_sites(c: C) -> list[Site]:
    return await c.list_sites()


@router.post("/v1/sites", status_code=201)
async def add_site(site: Annotated[SiteSpec, Body(openapi_examples=ex.SITE)], c: C) -> Site:
    return await c.add_site(site.name, site.description)


@router.get("/v1/clusters")
async def list_clusters(c: C, site: SiteQuery = None) -> list[Cluster]:
    return await c.list_clusters(site)


@router.post("/v1/clusters", status_code=201)
async def add_cluster(cluster: Annotated[Cluster, Body(openapi_examples=ex.CLUSTER)], c: C) -> Cluster:
    return await c.add_cluster(cluster.name, cluster.site, cluster.driver, cluster.endpoint)


@router.get("/v1/clusters/{cluster}/vms")
async def list_vms(cluster: ClusterPath, c: C) -> list[VM]:
    return await c.list_vms(cluster)


@router.post("/v1/clusters/{cluster}/vms/{vm}/start")
async def start_vm(cluster: ClusterPath, vm: VMPath, c: C) -> VM:
    """Power the VM on; a running VM stays as it is."""
    return await c.start_vm(cluster, vm)


@router.post("/v1/clusters/{cluster}/vms/{vm}/stop")
async def stop_vm(cluster: ClusterPath, vm: VMPath, c: C, force: bool = False,
                  timeout_s: Annotated[int, Query(ge=1, le=STOP_TIMEOUT_MAX_S)] = 30) -> VM:
    """Shut the VM down (the guest has `timeout_s`; 503 if it does not stop in time), or with
    `force` power it off."""
    return await c.stop_vm(cluster, vm, force=force, timeout_s=timeout_s)


@router.post("/v1/clusters/{cluster}/vms/{vm}/export")
async def export_disk(cluster: ClusterPath, vm: VMPath,
                      req: Annotated[DiskExportRequest, Body(openapi_examples=ex.EXPORT)], c: C) -> ExportedDisk:
    """Write a raw image of a stopped VM's disk, or of that disk in restore point `point`, to
    a new file on the worker of the site that holds the data, at `path` as that worker sees it."""
    return await c.export_disk(cluster, vm, req.disk, req.path, req.point)
