"""Validate everything, then act (issue 12): a DR operation, an `apply`, a restore with a
wrong input is refused with a message naming the problem, having changed nothing: the
production VM keeps running, no site, plan or VM appears. Driven as a user drives abdr: the
real `abdr` CLI (and the REST API) against a real dev server and real worker processes."""

from __future__ import annotations

import asyncio
import os

import pytest

from models.admin import ReplicaView
from models.ids import dr_id, drill_id
from starter.client import NotFound
from tests.e2e.api_process import api_process
from tests.e2e.conftest import MiB, Stack
from tests.e2e.test_backup_restore import plan_spec, run_plan
from tests.e2e.test_plan_options import ABDR
from tests.e2e.test_replication import DR, dr, make_vm, plan, replicate, server  # noqa: F401 (fixtures)
from tests.e2e.test_repository_integrity import chunk_files, flip, verify


async def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """The real `abdr` CLI with `env`: its exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(ABDR, *argv, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def abdr(dr: DR, *argv: str) -> tuple[int, str]:  # noqa: F811
    """The CLI against the DR stack (worker processes for the orchestrator and sites a, b)."""
    return await cli(dr.env, *argv)


def stack_env(stack: Stack) -> dict[str, str]:
    return {"ABDR_TEMPORAL_ADDRESS": stack.settings.temporal_address, "ABDR_DATA_DIR": str(stack.tmp / "cli")}


async def two_replicated_vms(dr: DR) -> str:
    """Plan `dr` replicating `web` and `db`, each with a point; returns a point of `db`."""
    for name in ("web", "db"):
        make_vm(dr.a, name)
    await dr.client.create_replication_plan(plan(vms=[{"cluster": "ca", "vm": "web"}, {"cluster": "ca", "vm": "db"}]))
    await replicate(dr)
    [db_point] = [p.id for p in await dr.client.list_restore_points(plan="dr") if p.vm == "db-replica"]
    return db_point


async def test_failover_to_another_vms_point_leaves_production_running(dr: DR) -> None:
    db_point = await two_replicated_vms(dr)
    code, out = await abdr(dr, "failover", "dr", "web", "--restore-point", db_point, "--source-shutdown", "poweroff",
                           "--wait")
    assert code != 0 and f"restore point {db_point!r} is not a point of replica" in out, out
    assert dr.power(dr.a, "web") == "RUNNING", "a refused failover stopped production"
    assert [(r.source.vm, r.state, r.owner) for r in await dr.client.list_replicas("dr")] == [
        ("db", "READY", None), ("web", "READY", None)]



async def test_failover_to_a_target_that_does_not_answer_leaves_production_running(dr: DR) -> None:
    make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    dr.procs["b"].stop()  # the target site's worker is down: nobody could start the replica
    code, out = await abdr(dr, "failover", "dr", "web", "--source-shutdown", "poweroff", "--wait")
    assert code == 6 and "nothing was changed: the target site b does not answer" in out, out
    assert dr.power(dr.a, "web") == "RUNNING", "production was stopped for a replica nobody can start"
    assert [(r.state, r.owner) for r in await dr.client.list_replicas("dr")] == [("READY", None)]


async def test_drill_and_failback_refuse_bad_inputs_before_acting(dr: DR) -> None:
    db_point = await two_replicated_vms(dr)
    code, out = await abdr(dr, "failover-test", "start", "dr", "web", "--restore-point", db_point, "--wait")
    assert code != 0 and "is not a point of replica" in out, out
    assert dr.b.find_vm("web-replica-test") is None and (await replica_of(dr, "web")).state == "READY"
    # A failback of a replica that never failed over is refused with its state named.
    code, out = await abdr(dr, "failback", "dr", "web", "--wait")
    assert code != 0 and "READY" in out, out
    assert dr.power(dr.a, "web") == "RUNNING"


async def replica_of(dr: DR, vm: str) -> ReplicaView:
    return next(r for r in await dr.client.list_replicas("dr") if r.source.vm == vm)


async def test_dr_operations_on_unknown_plans_and_vms_are_refused_at_once(dr: DR) -> None:
    make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    for argv in (["failover", "nosuch", "web"], ["failover", "undo", "nosuch", "web"],
                 ["failover-test", "start", "nosuch", "web"], ["failback", "nosuch", "web"],
                 ["permanent-failover", "nosuch", "web"]):
        code, out = await abdr(dr, *argv)  # without --wait: no "started" for a plan that does not exist
        assert code == 3 and "replication plan 'nosuch'" in out and "started" not in out, (argv, code, out)
    code, out = await abdr(dr, "failover", "dr", "nosuch")
    assert code == 3 and "VM 'nosuch' is not protected by replication plan 'dr'" in out, out
    # A replication plan over a VM that is not there is never created (it was, before its VM check).
    with pytest.raises(NotFound, match="ghost"):
        await dr.client.create_replication_plan(plan("dr2", vms=[{"cluster": "ca", "vm": "ghost"}]))
    assert "dr2" not in {p.spec.name for p in await dr.client.list_replication_plans()}
    started = {wf.id async for wf in dr.client.client.list_workflows()}
    assert not {dr_id("nosuch", "web"), drill_id("nosuch", "web"), dr_id("dr", "nosuch")} & started


async def test_rest_failover_of_an_unknown_plan_is_404(stack: Stack) -> None:
    async with api_process(stack, "t0ken-for-tests-123") as api, api.client() as http:
        for path, body in (("/v1/failover", {"plan": "nosuch", "vm": "web"}),
                           ("/v1/failover-tests", {"plan": "nosuch", "vm": "web"}),
                           ("/v1/failback", {"plan": "nosuch", "vm": "web"})):
            answer = await http.post(path, json=body)
            assert answer.status_code == 404 and "nosuch" in answer.text, (path, answer.status_code, answer.text)
        answer = await http.post("/v1/restores", json={"point_id": "nosuch", "mode": "REBUILD", "new_name": "x"})
        assert answer.status_code == 404, answer.text


async def test_a_damaged_point_is_refused_before_anything_is_created(stack: Stack) -> None:
    stack.make_vm("web", size=4 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    point = (await run_plan(stack, "gold")).vms[0].point_id
    flip(chunk_files(stack.repo_path)[0])
    assert (await verify(stack)).damaged_points == [point]
    for wait in ([], ["--wait"]):
        code, out = await cli(stack_env(stack), "restore", point, "--mode", "rebuild", "--new-name", "web-copy", *wait)
        assert code == 7 and f"restore point {point!r} is DAMAGED" in out, out
    assert stack.driver.find_vm("web-copy") is None


async def test_a_failed_rebuild_removes_the_vm_it_created(stack: Stack) -> None:
    stack.make_vm("web", size=4 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    point = (await run_plan(stack, "gold")).vms[0].point_id
    flip(chunk_files(stack.repo_path)[0])  # damaged on disk, not yet found by a verify: the write finds it
    code, out = await cli(stack_env(stack), "restore", point, "--mode", "rebuild", "--new-name", "web-copy", "--wait")
    assert code != 0 and "web-copy" not in {v.name for v in stack.driver.list_vms()}, out


async def test_apply_of_a_file_with_one_bad_plan_names_it_and_changes_nothing(stack: Stack) -> None:
    stack.make_vm("web", size=1 * MiB)
    f = stack.tmp / "plans.yaml"
    f.write_text(f"""
sites: [{{name: s2}}]
clusters: [{{name: c2, site: s2, path: {stack.tmp / 'c2'}}}]
repositories: [{{name: r2, site: default, path: {stack.tmp / 'r2'}}}]
backup_plans:
  - {{name: good, vms: [c1/web], repository: r1, schedule: "daily 03:00", retention: "count:3"}}
  - {{name: bad, vms: [c1/web, c1/nosuch], repository: r2, schedule: "daily 03:00", retention: "count:3"}}
""")
    code, out = await cli(stack_env(stack), "apply", "-f", str(f))
    assert code == 3 and "backup_plans[1] (bad)" in out and "nosuch" in out and "nothing was applied" in out, out
    assert "s2" not in {s.name for s in await stack.client.list_sites()}
    assert "c2" not in {c.name for c in await stack.client.list_clusters()}
    assert "r2" not in {r.name for r in await stack.client.list_repositories()}
    assert not await stack.client.list_backup_plans()
    # A reference to what neither the file nor the catalog has is named too.
    f.write_text("backup_plans: [{name: lost, vms: [c1/web], repository: r9, schedule: 'daily 03:00', "
                 "retention: 'count:3'}]\n")
    code, out = await cli(stack_env(stack), "apply", "-f", str(f))
    assert code == 3 and "backup_plans[0] (lost): repository 'r9' is neither in the file nor in the catalog" in out
