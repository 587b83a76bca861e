"""A failover test cleans itself up when its time is up, with nobody asking: an hour-long
drill run on the time-skipping test server, so the hour passes at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from models import search_attributes
from models.inventory import Cluster, DiskSpec, Site, VMConfig
from models.plans import VMRef
from models.replication import ReplicaState, ReplicationPlanSpec
from models.replication_jobs import DrOperationResult, ObjectChange
from models.requests import FailoverTestRequest
from models.restore_points import PointCreation, PointType, RestorePointSummary
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from tests.quiet import quiet_time
from worker import build_workers

MiB = 1 << 20


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    # The time-skipping server knows no custom search attributes until told (TEMPORAL-NOTES).
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=env.client.namespace,
        search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in search_attributes.ALL}))


def replica_with_a_point(catalog: Catalog, driver: LocalDriver) -> None:
    """The catalog and cluster state a replication run leaves: a replica VM, its snapshot
    recorded as a replica point, the object READY."""
    for site in ("a", "b"):
        catalog.add_site(Site(name=site))
    catalog.add_cluster(Cluster(name="ca", site="a", endpoint="/nonexistent"))
    catalog.add_cluster(Cluster(name="cb", site="b", endpoint=str(driver.paths.root)))
    spec = ReplicationPlanSpec.model_validate({
        "name": "dr", "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "ca", "target_site": "b",
        "target_cluster": "cb", "vms": [{"cluster": "ca", "vm": "web"}], "schedule": {"kind": "DAILY",
        "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 3}})
    catalog.add_replication_plan(spec)
    vm = driver.create_vm(VMConfig(name="web-replica", disks=[DiskSpec(name="disk0", size_bytes=4 * MiB)]))
    with driver.open_disk(vm.id, "disk0", writable=True) as h:
        h.write(0, b"boot" * (MiB // 4))
    snap = driver.create_snapshot(vm.id, "abdr-rp-p1")
    now = datetime.now(timezone.utc)
    catalog.add_restore_point(RestorePointSummary(id="p1", plan="dr", cluster="cb", vm="web-replica",
                                                  type=PointType.INCREMENTAL, creation=PointCreation.AUTO,
                                                  created_at=now), snapshot_id=snap.id, vm_config=snap.config)
    catalog.change_replication_object(ObjectChange(plan="dr", vm="web", to=ReplicaState.REPLICATING, at=now))
    catalog.change_replication_object(ObjectChange(plan="dr", vm="web", to=ReplicaState.READY, at=now,
                                                   updates={"replica_vm_id": vm.id, "replica_point": "p1"},
                                                   last_point_at=now))


async def test_drill_cleans_up_by_itself_after_its_time(time_skipping_env: WorkflowEnvironment, tmp_path: Path) -> None:
    env = time_skipping_env
    await register_search_attributes(env)
    settings = Settings(data_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'catalog.db'}", site="b",
                        transport_token="unused")
    catalog = Catalog(settings.catalog_url)
    driver = LocalDriver(tmp_path / "cb", "cb")
    replica_with_a_point(catalog, driver)
    client = AbdrClient(env.client, settings)
    async with AsyncExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(16))
        for w in build_workers(env.client, settings, catalog, site="b", run_workflows=True, executor=executor):
            await stack.enter_async_context(w)
        handle = await client.start_failover_test(FailoverTestRequest(plan="dr", vm="web", cleanup_after_s=3600))
        result: DrOperationResult = await handle.result()  # the server skips the hour while we wait
    assert result.details["tested"] and result.details["disks_match_point"]
    assert result.details["network"] == "abdr-isolated" and result.point_id == "p1"
    assert driver.find_vm("web-replica-test") is None  # the copy is gone
    obj = catalog.replication_object("dr", "web")
    assert obj.state == ReplicaState.READY
    page, _ = catalog.replica_history("dr", "web", limit=2)
    assert [c.to_state for _, c in reversed(page)] == [ReplicaState.FAILOVER_TEST, ReplicaState.READY]
    assert VMRef(cluster="cb", vm="web-replica") == obj.replica
    catalog.close()
