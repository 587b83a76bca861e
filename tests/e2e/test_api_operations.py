"""The REST routes beyond plans and DR requests, driven over HTTP against a real `abdr api`
process on the e2e stack, each checked by its effect where it lands (the cluster, the
repository's files, the Temporal schedule, the CLI's own listings), never by the API's
answer alone: inventory and VM power, services, repositories and their keys, restore points
shown, exported (byte for byte against the source's bytes), verified, damaged and deleted;
a replication plan's whole life with a failover test cleaned up; a running job cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.service import RPCError, RPCStatusCode

from drivers.local import LocalDriver
from drivers.local.tools import rewrite_fraction
from models.ids import vm_backup_id
from models.jobs import TransferProgress
from models.services import BackupService
from starter.api.errors import ErrorBody
from starter.runtime.schedules import schedule_id
from tests.e2e.api_process import api_process
from tests.e2e.conftest import MiB, Stack
from tests.e2e.histories import who_ran
from tests.e2e.observe import wait_heartbeat
from tests.e2e.oracle import assert_image, assert_same_bytes, capture
from tests.e2e.test_api import finished
from tests.e2e.test_backup_restore import plan_spec
from tests.e2e.test_plans import repo_point_ids
from tests.e2e.test_repository_integrity import chunk_files, flip
from tests.quiet import quiet_time

TOKEN = "operations-" + "o" * 24


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json()


def refused(r: httpx.Response, status: int, kind: str, words: str) -> None:
    """An error in the one shape, its status following its kind, its message saying why."""
    body = ErrorBody.model_validate(r.json())
    assert (r.status_code, body.kind) == (status, kind) and words in body.error, r.text


async def paused(stack: Stack, plan: str, kind: str) -> bool:
    return (await stack.client.client.get_schedule_handle(schedule_id(plan, kind)).describe()).schedule.state.paused


async def test_inventory_vm_power_services_and_repositories(stack: Stack) -> None:
    vm_id = stack.make_vm("web", size=1 * MiB)
    async with api_process(stack, TOKEN) as api, api.client() as http:
        assert [s["name"] for s in ok(await http.get("/v1/sites"))] == ["default"]
        site = ok(await http.post("/v1/sites", json={"name": "dr", "description": "second"}), 201)
        assert (site["name"], site["description"]) == ("dr", "second")
        assert {"dr", "default"} == {s["name"] for s in await stack.cli_json("site", "list")}
        refused(await http.post("/v1/sites", json={"name": "dr"}), 409, "conflict", "exists")
        refused(await http.post("/v1/sites", json={"name": "x", "transport_url": "http://h:1"}), 422, "invalid",
                "transport_url")  # the site's worker announces it: never taken and dropped

        c2 = stack.tmp / "clusters" / "c2"
        ok(await http.post("/v1/clusters", json={"name": "c2", "site": "dr", "endpoint": str(c2)}), 201)
        assert [c["name"] for c in ok(await http.get("/v1/clusters", params={"site": "dr"}))] == ["c2"]
        assert {("c1", "default"), ("c2", "dr")} == {(c["name"], c["site"]) for c in
                                                     await stack.cli_json("cluster", "list")}

        # VMs: listed, started and stopped by the cluster's site worker; the driver sees it.
        [vm] = ok(await http.get("/v1/clusters/c1/vms"))
        assert (vm["id"], vm["config"]["name"], vm["power_state"]) == (vm_id, "web", "STOPPED")
        assert ok(await http.post("/v1/clusters/c1/vms/web/start"))["power_state"] == "RUNNING"
        assert stack.driver.get_vm(vm_id).power_state == "RUNNING"
        assert [v["power_state"] for v in await stack.cli_json("vm", "list", "-c", "c1")] == ["RUNNING"]
        stack.driver.set_guest_behavior(vm_id, refuse_shutdown=True)
        refused(await http.post("/v1/clusters/c1/vms/web/stop", params={"timeout_s": 1}), 503, "unavailable",
                "did not shut down within 1s")
        assert stack.driver.get_vm(vm_id).power_state == "RUNNING"
        assert ok(await http.post("/v1/clusters/c1/vms/web/stop", params={"force": True}))["power_state"] == "STOPPED"
        assert stack.driver.get_vm(vm_id).power_state == "STOPPED"
        refused(await http.post("/v1/clusters/c1/vms/ghost/start"), 404, "not_found", "VM 'ghost' not found")
        refused(await http.get("/v1/clusters/nowhere/vms"), 404, "not_found", "cluster 'nowhere' not found")
        refused(await http.post("/v1/clusters/c1/vms/web/stop", params={"timeout_s": 999}), 422, "invalid",
                "timeout_s")

        # Services: a PUT sets the whole service; the CLI and the catalog read what it set.
        svc = {"name": "default", "site": "default", "max_parallel_backups": 3, "backup_read_iops": 500}
        assert ok(await http.put("/v1/services/backup/default", json=svc))["max_parallel_backups"] == 3
        [shown] = [s for s in (await stack.cli_json("service", "show"))["backup"] if s["name"] == "default"]
        assert (shown["max_parallel_backups"], shown["backup_read_iops"], shown["max_retries"]) == (3, 500, 3), shown
        ok(await http.put("/v1/services/replication/default",
                          json={"name": "default", "site": "default", "replication_bandwidth_mbps": 200}))
        listed = ok(await http.get("/v1/services", params={"site": "default"}))
        assert [s["replication_bandwidth_mbps"] for s in listed["replication"]] == [200]
        refused(await http.put("/v1/services/backup/other", json=svc), 400, "invalid",
                "the body names service 'default', the path 'other'")
        refused(await http.put("/v1/services/backup/x", json={"name": "x", "site": "nowhere"}), 404, "not_found",
                "site 'nowhere' not found")

        # Repositories: created by the site's worker at the path it sees; an encrypted one's key.
        assert [r["name"] for r in ok(await http.get("/v1/repositories"))] == ["r1"]
        r2 = stack.tmp / "r2"
        created = ok(await http.post("/v1/repositories", json={"name": "r2", "path": str(r2)}), 201)
        assert (created["path"], created["key_file"]) == (str(r2), None)
        assert (r2 / "chunks").is_dir() and (r2 / "points").is_dir()
        assert {"r1", "r2"} == {r["name"] for r in await stack.cli_json("repository", "list")}
        refused(await http.post("/v1/repositories", json={"name": "r2", "path": str(r2)}), 409, "conflict", "r2")
        r3 = ok(await http.post("/v1/repositories", json={"name": "r3", "path": str(stack.tmp / "r3"),
                                                            "encrypt": True}), 201)
        assert r3["key_file"] and r3["key_id"]
        installed = ok(await http.post("/v1/repositories/r3/key", json={"key_file": r3["key_file"]}))
        assert installed["key_id"] == r3["key_id"]
        other = ok(await http.post("/v1/repositories", json={"name": "r4", "path": str(stack.tmp / "r4"),
                                                               "encrypt": True}), 201)
        refused(await http.post("/v1/repositories/r3/key", json={"key_file": other["key_file"]}), 400, "failed",
                "the key does not belong to repository")  # another repository's key
        refused(await http.post("/v1/repositories/nope/key", json={"key_file": other["key_file"]}), 404,
                "not_found", "repository 'nope' not found")


async def test_restore_points_shown_exported_verified_and_deleted(stack: Stack) -> None:
    vm_id = stack.make_vm("web", size=4 * MiB)
    oracles = [stack.disk_bytes("web")]  # the source's bytes at each point, captured before it
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    async with api_process(stack, TOKEN) as api, api.client() as http:
        for seed in (1, 2):
            run = ok(await http.post("/v1/backup-plans/gold/run"), 202)
            assert (await finished(http, run["workflow_id"]))["result"]["result"] == "SUCCESS"
            rewrite_fraction(stack.driver, vm_id, "disk0", 0.2, seed=seed)
            oracles.append(stack.disk_bytes("web"))
        ids = [p["id"] for p in ok(await http.get("/v1/restore-points", params={"plan": "gold"}))]  # oldest first
        assert len(ids) == 2

        detail = ok(await http.get(f"/v1/restore-points/{ids[0]}"))
        assert (detail["id"], detail["vm"], detail["repository"]) == (ids[0], "web", "r1")
        assert [(d["name"], d["size_bytes"]) for d in detail["vm_config"]["disks"]] == [("disk0", 4 * MiB)]
        refused(await http.get("/v1/restore-points/nope"), 404, "not_found", "nope")

        # Each point exported by the worker to a raw file: the source's bytes at that point.
        for pid, oracle in zip(ids, oracles):
            path = stack.tmp / f"{pid}.raw"
            out = ok(await http.post("/v1/clusters/c1/vms/web/export",
                                     json={"disk": "disk0", "path": str(path), "point": pid}))
            assert (out["path"], out["size_bytes"]) == (str(path), 4 * MiB)
            assert_same_bytes(path.read_bytes(), oracle, f"point {pid} exported through the REST API")
        refused(await http.post("/v1/clusters/c1/vms/web/export",
                                json={"disk": "disk0", "path": str(stack.tmp / f"{ids[0]}.raw"), "point": ids[0]}),
                400, "invalid", "exists already")

        # Verify: clean, then a chunk damaged on disk is found, named and paged.
        started = ok(await http.post("/v1/repositories/r1/verify"), 202)
        clean = await finished(http, started["workflow_id"])
        assert clean["status"] == "COMPLETED" and (clean["result"]["verified_points"],
                                                   clean["result"]["findings"]) == (2, 0), clean
        assert ok(await http.get("/v1/repositories/r1/findings"))["total"] == 0
        flip(chunk_files(stack.repo_path)[0])
        damaged = await finished(http, ok(await http.post("/v1/repositories/r1/verify"), 202)["workflow_id"])
        assert damaged["result"]["findings"] > 0 and damaged["result"]["damaged_points"], damaged
        page = ok(await http.get("/v1/repositories/r1/findings", params={"limit": 1}))
        assert page["total"] == damaged["result"]["findings"] and len(page["findings"]) == 1, page
        assert page["findings"][0]["point_id"] in ids
        bad = set(damaged["result"]["damaged_points"])
        assert {p["id"] for p in ok(await http.get("/v1/restore-points", params={"plan": "gold"}))
                if p["state"] == "DAMAGED"} == bad

        # Delete: gone from the listing, the CLI's listing and the repository's files.
        deleted = ok(await http.delete(f"/v1/restore-points/{ids[0]}"))
        assert deleted == {"deleted": [ids[0]]}
        assert [p["id"] for p in ok(await http.get("/v1/restore-points", params={"plan": "gold"}))] == [ids[1]]
        assert [p["id"] for p in await stack.cli_json("restore-point", "list", "--plan", "gold")] == [ids[1]]
        assert repo_point_ids(stack) == {ids[1]}
        refused(await http.get(f"/v1/restore-points/{ids[0]}"), 404, "not_found", ids[0])
        refused(await http.delete(f"/v1/restore-points/{ids[0]}"), 404, "not_found", ids[0])


REPLICATION = {"name": "dr", "kind": "INTRA_SITE", "source_site": "default", "source_cluster": "c1",
               "target_site": "default", "target_cluster": "c2", "vms": [{"cluster": "c1", "vm": "web"}],
               "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 5}}


async def test_replication_plan_life_and_failover_test_cleanup(stack: Stack, transport: None) -> None:
    stack.make_vm("web", size=2 * MiB)
    source = capture(stack.driver, "web")
    await stack.client.add_cluster("c2", "default", "local", str(stack.tmp / "clusters" / "c2"))
    c2 = LocalDriver(stack.tmp / "clusters" / "c2", "c2")
    async with api_process(stack, TOKEN) as api, api.client() as http:
        ok(await http.post("/v1/replication-plans", json=REPLICATION), 201)
        got = ok(await http.get("/v1/replication-plans/dr"))
        assert (got["status"], got["spec"]["target_cluster"]) == ("WORKING", "c2")
        assert not await paused(stack, "dr", "replication")

        # Update: the CLI reads the new spec; a paused plan's schedule stays paused through an update.
        changed = {**REPLICATION, "description": "changed", "retention": {"kind": "COUNT", "value": 3}}
        assert ok(await http.put("/v1/replication-plans/dr", json=changed))["description"] == "changed"
        shown = await stack.cli_json("replication-plan", "show", "dr")
        assert (shown["spec"]["description"], shown["spec"]["retention"]["value"]) == ("changed", 3)
        refused(await http.put("/v1/replication-plans/other", json=changed), 400, "invalid",
                "the body names plan 'dr', the path 'other'")
        assert ok(await http.post("/v1/replication-plans/dr/pause"))["status"] == "PAUSED"
        assert await paused(stack, "dr", "replication")
        ok(await http.put("/v1/replication-plans/dr", json=changed))
        assert await paused(stack, "dr", "replication")
        assert [p["status"] for p in await stack.cli_json("replication-plan", "list")] == ["PAUSED"]
        assert ok(await http.post("/v1/replication-plans/dr/resume"))["status"] == "WORKING"
        assert not await paused(stack, "dr", "replication")

        run = ok(await http.post("/v1/replication-plans/dr/run"), 202)
        assert (await finished(http, run["workflow_id"]))["result"]["result"] == "SUCCESS"
        assert_image(c2, "web-replica", source, "the replica made by a run started through REST")
        points = ok(await http.get("/v1/replicas/dr/web/points"))
        assert [p["id"] for p in points] == [p["id"] for p in ok(await http.get("/v1/restore-points",
                                                                                  params={"plan": "dr"}))]
        history = ok(await http.get("/v1/replicas/dr/web/history", params={"limit": 1}))
        assert len(history["entries"]) == 1 and history["total"] > 1 and history["next_before"], history
        assert history["entries"][0]["to_state"] == "READY"
        refused(await http.get("/v1/replicas/dr/ghost/points"), 404, "not_found", "'ghost' is not protected")

        # A failover test started and cleaned up through REST: the copy ran, then is gone.
        ok(await http.post("/v1/failover-tests", json={"plan": "dr", "vm": "web"}), 202)
        for _ in range(300):
            copy = c2.find_vm("web-replica-test")
            if copy is not None and c2.get_vm(copy.id).power_state == "RUNNING":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the failover test's copy never ran")
        assert_image(c2, "web-replica-test", source, "the failover test's copy")
        assert ok(await http.get("/v1/replicas", params={"plan": "dr"}))[0]["state"] == "FAILOVER_TEST"
        done = ok(await http.post("/v1/failover-tests/dr/web/cleanup"))
        assert (done["point_id"], done["state"]) == (points[0]["id"], "READY"), done
        assert c2.find_vm("web-replica-test") is None
        assert ok(await http.get("/v1/replicas", params={"plan": "dr"}))[0]["state"] == "READY"
        refused(await http.post("/v1/failover-tests/dr/web/cleanup"), 404, "not_found",
                "no failover test of dr/web is running")

        # Delete: the plan and its schedule are gone; the replica VM stays.
        assert ok(await http.delete("/v1/replication-plans/dr")) == {"deleted": "dr"}
        refused(await http.get("/v1/replication-plans/dr"), 404, "not_found", "'dr' not found")
        try:
            await paused(stack, "dr", "replication")
            raise AssertionError("the deleted plan's schedule is still there")
        except RPCError as e:
            assert e.status == RPCStatusCode.NOT_FOUND
        assert await stack.cli_json("replication-plan", "list") == []
        assert c2.find_vm("web-replica") is not None


async def test_a_running_job_is_cancelled_and_cleans_up(stack: Stack) -> None:
    vm_id = stack.make_vm("big", size=16 * MiB)
    source = capture(stack.driver, "big")
    stack.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=2))  # slow: 128 KiB/s
    await stack.client.create_backup_plan(plan_spec("slow", ["big"]))
    async with api_process(stack, TOKEN) as api, api.client() as http:
        job = ok(await http.post("/v1/backup-plans/slow/run"), 202)["workflow_id"]
        await wait_heartbeat(stack.client.client, vm_backup_id("slow", "c1", "big"), "transfer_backup",
                             TransferProgress, "bytes_done", 1)
        ended = ok(await http.post(f"/v1/jobs/{job}/cancel", params={"wait": True}))
        assert (ended["workflow_id"], ended["status"]) == (job, "CANCELLED"), ended
        assert ok(await http.get(f"/v1/jobs/{job}"))["status"] == "CANCELLED"
        listed = await stack.cli_json("job", "list", "--plan", "slow")
        rows = [j for j in listed if j["workflow_id"] == job]
        # Failed twice in full runs (never alone): both listings came back empty while Temporal
        # said CANCELLED, i.e. the run's job rows were written to some other catalog. Say which
        # worker (each stack's connection is named after its test) ran the run's activities.
        assert len(rows) == 1, (listed, await stack.cli_json("job", "list", "--limit", "200"),
                                await who_ran(stack.client.client, job))
        assert rows[0]["status"] == "CANCELLED", rows
        assert ok(await http.get("/v1/restore-points", params={"plan": "slow"})) == []
        assert repo_point_ids(stack) == set() and stack.driver.list_snapshots(vm_id) == []  # the backup cleaned up
        assert_image(stack.driver, "big", source, "source after the cancelled backup")
        refused(await http.post(f"/v1/jobs/{job}/cancel"), 409, "conflict", "is not running")
        refused(await http.post("/v1/jobs/backup-plan/nope/cancel"), 404, "not_found",
                "job 'backup-plan/nope' not found")
