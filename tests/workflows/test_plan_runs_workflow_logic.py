"""Workflow-logic tests of the plan-run skeleton (workflows/plan_runs.py) on a dev server of their own:
the real BackupPlanRun and ReplicationPlanRun against stub catalog activities and stub
child workflows that hold or fail on purpose, to reach what the end-to-end tests cannot
arrange: a VM held in flight while the others slide through the window, an empty plan,
a partial failure. They add to tests/e2e/test_plans.py and test_replication.py."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from models.ids import plan_run_id, replicate_id, replication_run_id, vm_backup_id
from models.inventory import Consistency
from models.jobs import (
    CarriedVM,
    CarryBatchInput,
    CarryBatchResult,
    JobRecord,
    PlanResultInput,
    PlanRunInput,
    PlanRunResult,
    ResolvedPlan,
    ResolvedVM,
    VMBackupInput,
    VMBackupResult,
)
from models.plan_pages import RunVMResults
from models.plans import BackupDelayOption, RunResult, VMRef
from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue
from models.replication import ReplicationObject, ReplicationPlanSpec
from models.replication_jobs import (
    CarriedReplica,
    ReplicaCarryInput,
    ReplicaCarryResult,
    ReplicaCheckInput,
    ReplicaCheckResult,
    ReplicateInput,
    ReplicateResult,
    ReplicationRunInput,
    ReplicationRunResult,
    ResolvedReplicationPlan,
    UnchangedSource,
)
from models.retention import Retention, RetentionKind
from tests.conftest import dev_server
from workflows.plan_run import BackupPlanRunWorkflow
from workflows.plan_runs import NOTHING_TO_PROTECT
from workflows.replication_plan import ReplicationPlanRunWorkflow

PLANS: dict[str, ResolvedPlan | ResolvedReplicationPlan] = {}
RECORDED: defaultdict[str, list[RunResult]] = defaultdict(list)  # each plan's set_*_result calls
LOG: list[str] = []  # "+vm" when a stub child starts its work, "-vm" when it ends
HOLD = asyncio.Event()  # lets a batch holding a `*slow*` VM end
REPLICA_BATCHES: list[ReplicaCarryInput] = []
RUN_VMS: defaultdict[tuple[str, str], list[tuple[int, str, bool]]] = defaultdict(list)  # record_run_vms rows


@activity.defn(name="resolve_plan")
async def resolve_plan(inp: PlanRunInput) -> ResolvedPlan:
    plan = PLANS[inp.plan]
    assert isinstance(plan, ResolvedPlan)
    return plan


@activity.defn(name="resolve_replication_plan")
async def resolve_replication_plan(inp: ReplicationRunInput) -> ResolvedReplicationPlan:
    plan = PLANS[inp.plan]
    assert isinstance(plan, ResolvedReplicationPlan)
    return plan


@activity.defn(name="set_plan_result")
async def set_plan_result(inp: PlanResultInput) -> None:
    RECORDED[inp.plan].append(inp.result)


@activity.defn(name="set_replication_plan_result")
async def set_replication_plan_result(inp: PlanResultInput) -> None:
    RECORDED[inp.plan].append(inp.result)


@activity.defn(name="record_job")
async def record_job(rec: JobRecord) -> None:
    pass


@activity.defn(name="record_run_vms")
async def record_run_vms(inp: RunVMResults) -> None:
    for row in inp.rows:
        RUN_VMS[(inp.workflow_id, inp.run_id)].append((row.index, row.vm, row.ok))


@activity.defn(name="carry_unchanged")
async def carry_unchanged(inp: CarryBatchInput) -> CarryBatchResult:
    """The site's no-change batch: `same*` VMs are unchanged ("=vm"); a batch holding
    `boom` fails (then every VM gets its child)."""
    names = [v.vm.vm for v in inp.vms]
    LOG.append("batch " + ",".join(names))
    if any("slow" in n for n in names):  # held until the test lets it go
        while not HOLD.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.1)
    if "boom" in names:
        raise ApplicationError("the batch failed on purpose", type="OnPurpose", non_retryable=True)
    return CarryBatchResult(carried=[CarriedVM(index=v.index, point_id=v.point_id, reason="nothing changed")
                                     for v in inp.vms if v.vm.vm.startswith("same")])


@activity.defn(name="check_sources_unchanged")
async def check_sources_unchanged(inp: ReplicaCheckInput) -> ReplicaCheckResult:
    """The replication page's source check: `same*` VMs are unchanged; `nocheck` fails it."""
    names = [v.vm for v in inp.vms]
    LOG.append("check " + ",".join(names))
    if any("slowcheck" in n for n in names):
        while not HOLD.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.1)
    if "nocheck" in names:
        raise ApplicationError("the check failed on purpose", type="OnPurpose", non_retryable=True)
    return ReplicaCheckResult(unchanged=[UnchangedSource(index=v.index, source_snapshot=f"base-{v.vm}")
                                         for v in inp.vms if v.vm.startswith("same")])


@activity.defn(name="carry_replicas")
async def carry_replicas(inp: ReplicaCarryInput) -> ReplicaCarryResult:
    """The replica batch (as carry_unchanged above): `slow` holds it, `sameboom` fails it."""
    names = [v.vm for v in inp.vms]
    LOG.append("replicas " + ",".join(names))
    REPLICA_BATCHES.append(inp)
    if any("slow" in n for n in names):
        while not HOLD.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.1)
    if "sameboom" in names:
        raise ApplicationError("the batch failed on purpose", type="OnPurpose", non_retryable=True)
    return ReplicaCarryResult(carried=[CarriedReplica(index=v.index, point_id=v.point_id, disk_bytes=1)
                                       for v in inp.vms])


@activity.defn(name="release_batch_claims")
async def release_batch_claims(inp: ReplicaCarryInput) -> None:
    LOG.append("release " + ",".join(f"{v.vm}@{v.owner}" for v in inp.vms))


@activity.defn(name="track")
async def track(event: str) -> None:
    LOG.append(event)


async def stub_work(vm: str, released: object) -> None:
    """A VM's work: `held*` VMs wait for the test's signal, `bad*` ones fail on purpose."""
    await workflow.execute_activity(track, f"+{vm}", start_to_close_timeout=timedelta(seconds=30))
    if vm.startswith("held"):
        await workflow.wait_condition(lambda: bool(getattr(released, "released", False)))
    else:
        await workflow.sleep(timedelta(milliseconds=300))
    await workflow.execute_activity(track, f"-{vm}", start_to_close_timeout=timedelta(seconds=30))
    if vm.startswith("bad"):
        raise ApplicationError(f"{vm} failed on purpose", type="OnPurpose", non_retryable=True)


@workflow.defn(name="VMBackup")
class StubVMBackup:
    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self, inp: VMBackupInput) -> VMBackupResult:
        await stub_work(inp.vm.ref.vm, self)
        return VMBackupResult(vm=inp.vm.ref, ok=True, point_id=inp.point_id)


@workflow.defn(name="Replicate")
class StubReplicate:
    @workflow.run
    async def run(self, inp: ReplicateInput) -> ReplicateResult:
        await stub_work(inp.vm, self)
        return ReplicateResult(vm=VMRef(cluster=inp.spec.source_cluster, vm=inp.vm), ok=True, point_id=inp.point_id)


@pytest.fixture(scope="module")
async def own_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this module's own: its stub workers register the real workflow names
    and a `record_job` that writes nowhere on abdr's real queues, so on the session's shared
    server a poller of theirs (or a run they left going) could serve another test's stack."""
    async with dev_server() as env:
        yield env


@pytest.fixture
async def client(own_server: WorkflowEnvironment) -> AsyncIterator[Client]:
    LOG.clear()
    async with Worker(own_server.client, task_queue=WORKFLOW_TASK_QUEUE,
                      workflows=[BackupPlanRunWorkflow, ReplicationPlanRunWorkflow, StubVMBackup, StubReplicate],
                      activities=[resolve_plan, resolve_replication_plan, set_plan_result,
                                  set_replication_plan_result, record_job, record_run_vms, release_batch_claims,
                                  track],
                      workflow_runner=UnsandboxedWorkflowRunner()), \
            Worker(own_server.client, task_queue=site_task_queue("default"), activities=[carry_unchanged]), \
            Worker(own_server.client, task_queue=site_task_queue("a"), activities=[check_sources_unchanged]), \
            Worker(own_server.client, task_queue=site_task_queue("b"), activities=[carry_replicas]):
        yield own_server.client


def backup_plan(vms: list[ResolvedVM], max_parallel: int) -> str:
    name = f"b{uuid.uuid4().hex[:8]}"
    PLANS[name] = ResolvedPlan(
        plan=name, repository="r", repository_path="/nowhere", repository_site="default", vms=vms, window=None,
        time_zone="UTC", delay_option=BackupDelayOption.KEEP_GO_ON, retention=Retention(kind=RetentionKind.FOREVER),
        consistency=Consistency.CRASH_CONSISTENT, compression=True, max_parallel=max_parallel, max_retries=0,
        retry_interval_s=1)
    return name


def replication_plan(vms: list[str], max_jobs: int) -> str:
    name = f"r{uuid.uuid4().hex[:8]}"
    spec = ReplicationPlanSpec.model_validate({
        "name": name, "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "ca", "target_site": "b",
        "target_cluster": "cb", "vms": [{"cluster": "ca", "vm": vm} for vm in vms or ["gone"]],
        "schedule": {"kind": "DAILY", "times": ["03:00"]}, "retention": {"kind": "COUNT", "value": 5}})
    objects = [ReplicationObject(plan=name, source=VMRef(cluster="ca", vm=vm), replica=VMRef(cluster="cb", vm=vm))
               for vm in vms]
    PLANS[name] = ResolvedReplicationPlan(spec=spec, objects=objects, paused=False, max_jobs=max_jobs)
    return name


def vm(name: str, error: str = "") -> ResolvedVM:
    return ResolvedVM(ref=VMRef(cluster="c", vm=name), site="default", error=error)


def most_in_flight(log: list[str]) -> int:
    now = peak = 0
    for event in log:
        if event[0] not in "+-":  # a batch, not a child
            continue
        now += 1 if event.startswith("+") else -1
        peak = max(peak, now)
    return peak


async def test_the_window_caps_children_in_flight_and_slides_past_a_held_one(client: Client) -> None:
    """Window 2: `held` keeps one slot; b1, b2, b3 and bad pass one after another through the
    other (a batch fan-out would wait for `held`); a VM that resolved with an error fails
    without a child; the run is PARTIAL_SUCCESS, VMs in the plan's order."""
    plan = backup_plan([vm("held"), vm("b1"), vm("lost", error="cluster 'x' is unknown"), vm("b2"), vm("b3"),
                        vm("bad")], max_parallel=2)
    handle = await client.start_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True),
                                         id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    while "-bad" not in LOG:  # every other VM went through while `held` is still in flight
        await asyncio.sleep(0.1)
    assert "-held" not in LOG
    await client.get_workflow_handle(vm_backup_id(plan, "c", "held")).signal(StubVMBackup.release)
    result: PlanRunResult = await handle.result()
    assert result.result == RunResult.PARTIAL_SUCCESS
    assert [(v.vm.vm, v.ok) for v in result.vms] == [
        ("held", True), ("b1", True), ("lost", False), ("b2", True), ("b3", True), ("bad", False)]
    assert result.vms[2].error == "cluster 'x' is unknown" and "+lost" not in LOG
    assert result.vms[5].error == "bad failed on purpose"
    assert most_in_flight(LOG) == 2
    assert RECORDED[plan] == [RunResult.RUNNING, RunResult.PARTIAL_SUCCESS]


async def test_replication_partial_failure_one_at_a_time(client: Client) -> None:
    plan = replication_plan(["web", "bad", "db"], max_jobs=1)
    result = await client.execute_workflow(ReplicationPlanRunWorkflow.run, ReplicationRunInput(plan=plan, manual=True),
                                           id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert isinstance(result, ReplicationRunResult) and result.result == RunResult.PARTIAL_SUCCESS
    assert [(v.vm.vm, v.ok, v.error) for v in result.vms] == [
        ("web", True, ""), ("bad", False, "bad failed on purpose"), ("db", True, "")]
    children = [e for e in LOG if e[0] in "+-"]  # after the page's no-change check (none unchanged)
    assert most_in_flight(LOG) == 1 and children[:2] == ["+web", "-web"] and LOG[0] == "check web,bad,db"
    assert RECORDED[plan] == [RunResult.RUNNING, RunResult.PARTIAL_SUCCESS]


@pytest.mark.parametrize("kind", ["backup", "replication"])
async def test_an_empty_plan_run_ends_failed_for_both_kinds(client: Client, kind: str) -> None:
    """Nothing resolved to protect: FAILED, said why, recorded as the plan's last result."""
    if kind == "backup":
        plan = backup_plan([], max_parallel=2)
        result = await client.execute_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True),
                                               id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    else:
        plan = replication_plan([], max_jobs=2)
        result = await client.execute_workflow(ReplicationPlanRunWorkflow.run,
                                               ReplicationRunInput(plan=plan, manual=True),
                                               id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert result.result == RunResult.FAILED and result.vms == []
    assert result.skipped_reason == NOTHING_TO_PROTECT
    assert RECORDED[plan] == [RunResult.RUNNING, RunResult.FAILED]


async def test_a_run_larger_than_its_page_continues_as_new_and_keeps_every_vm_result(client: Client) -> None:
    """Pages of 3 over 8 VMs (one failing, one resolved with an error): three workflow runs
    chained by continue-as-new, each VM's result written once under the chain's first run,
    in the plan's order, and a summary that counts them instead of listing them."""
    names = ["p0", "p1", "bad2", "p3", "p4", "p5", "p6", "p7"]
    plan = backup_plan([vm(n, error="cluster 'x' is unknown" if n == "p4" else "") for n in names], max_parallel=2)
    handle = await client.start_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True, page_size=3),
                                         id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    result: PlanRunResult = await handle.result()
    assert result.result == RunResult.PARTIAL_SUCCESS
    assert (result.vms_total, result.vms_ok, result.vms_failed, result.runs, result.paged) == (8, 6, 2, 3, True)
    assert result.vms == [] and result.run_id == handle.first_execution_run_id
    rows = RUN_VMS[(plan_run_id(plan), handle.first_execution_run_id)]
    assert rows == [(i, f"c/{n}", n not in ("bad2", "p4")) for i, n in enumerate(names)]
    assert sorted(e for e in LOG if e.startswith("+")) == sorted(f"+{n}" for n in names if n != "p4")  # none twice
    assert most_in_flight(LOG) <= 2
    assert RECORDED[plan] == [RunResult.RUNNING, RunResult.PARTIAL_SUCCESS]
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{plan_run_id(plan)}'")]
    assert len(runs) == 3


async def test_a_run_that_fits_its_page_lists_every_vm_as_before(client: Client) -> None:
    plan = backup_plan([vm("a"), vm("b")], max_parallel=2)
    handle = await client.start_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True, page_size=2),
                                         id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    result: PlanRunResult = await handle.result()
    assert [(v.vm.vm, v.ok) for v in result.vms] == [("a", True), ("b", True)]
    assert (result.vms_total, result.vms_ok, result.runs, result.paged) == (2, 2, 1, False)
    assert [r[1] for r in RUN_VMS[(plan_run_id(plan), handle.first_execution_run_id)]] == ["c/a", "c/b"]


async def test_replication_runs_go_in_pages_too(client: Client) -> None:
    vms = [f"w{i}" for i in range(5)]
    plan = replication_plan(vms, max_jobs=2)
    handle = await client.start_workflow(ReplicationPlanRunWorkflow.run,
                                         ReplicationRunInput(plan=plan, manual=True, page_size=2),
                                         id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    result: ReplicationRunResult = await handle.result()
    assert result.result == RunResult.SUCCESS and (result.vms_total, result.vms_ok, result.runs) == (5, 5, 3)
    assert [r[1] for r in RUN_VMS[(replication_run_id(plan), handle.first_execution_run_id)]] == [
        f"ca/{v}" for v in vms]


async def vm_runs(client: Client, plan: str, name: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{vm_backup_id(plan, 'c', name)}'")])


async def test_unchanged_vms_get_their_points_from_the_batch_and_only_the_others_get_children(
        client: Client) -> None:
    """Pages of 3 over 6 VMs, 1 at a time: each page's VMs go to one batch first; the `same*`
    ones it carries have no child workflow, the others do, and the results stay in the
    plan's order, each with the point id the workflow gave it."""
    names = ["same0", "b1", "same2", "same3", "lost4", "b5"]
    plan = backup_plan([vm(n, error="cluster 'x' is unknown" if n == "lost4" else "") for n in names],
                       max_parallel=1)
    handle = await client.start_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True, page_size=3),
                                         id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    result: PlanRunResult = await handle.result()
    assert (result.result, result.vms_total, result.vms_ok, result.runs) == (RunResult.PARTIAL_SUCCESS, 6, 5, 2)
    assert [e for e in LOG if e.startswith("batch")] == ["batch same0,b1,same2", "batch same3,b5"]  # lost4: no VM
    assert sorted(e for e in LOG if e.startswith("+")) == ["+b1", "+b5"]
    for name, children in [("same0", 0), ("b1", 1), ("same2", 0), ("same3", 0), ("lost4", 0), ("b5", 1)]:
        assert await vm_runs(client, plan, name) == children, name
    rows = RUN_VMS[(plan_run_id(plan), handle.first_execution_run_id)]
    assert rows == [(i, f"c/{n}", n != "lost4") for i, n in enumerate(names)]


async def test_a_failed_batch_leaves_every_vm_to_its_child(client: Client) -> None:
    plan = backup_plan([vm("same0"), vm("boom"), vm("same2")], max_parallel=2)
    result = await client.execute_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True),
                                           id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert result.result == RunResult.SUCCESS
    assert [(v.vm.vm, v.ok) for v in result.vms] == [("same0", True), ("boom", True), ("same2", True)]
    assert sorted(e for e in LOG if e.startswith("+")) == ["+boom", "+same0", "+same2"]


async def test_a_full_run_starts_no_batch(client: Client) -> None:
    plan = backup_plan([vm("same0"), vm("b1")], max_parallel=2)
    result = await client.execute_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True, full=True),
                                           id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert result.result == RunResult.SUCCESS and not [e for e in LOG if e.startswith("batch")]
    assert sorted(e for e in LOG if e.startswith("+")) == ["+b1", "+same0"]


async def test_a_run_cancelled_during_its_batch_keeps_the_carried_points_and_starts_no_child(
        client: Client) -> None:
    """The batch is in flight when the run is cancelled: the batch is waited for (its VMs
    have their points and count as done), no child starts, the run ends CANCELLED."""
    HOLD.clear()
    plan = backup_plan([vm("same0"), vm("b1"), vm("sameslow2")], max_parallel=2)
    handle = await client.start_workflow(BackupPlanRunWorkflow.run, PlanRunInput(plan=plan, manual=True),
                                         id=plan_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    while not any(e.startswith("batch") for e in LOG):
        await asyncio.sleep(0.1)
    await handle.cancel()
    await asyncio.sleep(1)  # the cancel reaches the workflow while the batch holds
    HOLD.set()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    assert not [e for e in LOG if e.startswith("+")]
    rows = RUN_VMS[(plan_run_id(plan), handle.first_execution_run_id)]
    assert rows == [(0, "c/same0", True), (1, "c/b1", False), (2, "c/sameslow2", True)]
    assert RECORDED[plan] == [RunResult.RUNNING, RunResult.PARTIAL_SUCCESS]


async def replicate_runs(client: Client, plan: str, name: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{replicate_id(plan, name)}'")])


async def test_replication_carries_unchanged_vms_in_one_batch_per_page_and_children_do_the_rest(
        client: Client) -> None:
    """Workflow logic with stub site activities. Pages of 3 over 6 VMs: each page is checked on the
    source site, its `same*` VMs go to one batch on the target site with the ids their
    children would have had (point id, claim owner = the child's workflow id), and have no
    child; the others do; results in the plan's order."""
    REPLICA_BATCHES.clear()
    names = ["same0", "c1", "same2", "same3", "same4", "c5"]
    plan = replication_plan(names, max_jobs=1)
    handle = await client.start_workflow(ReplicationPlanRunWorkflow.run,
                                         ReplicationRunInput(plan=plan, manual=True, page_size=3),
                                         id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    result: ReplicationRunResult = await handle.result()
    assert (result.result, result.vms_total, result.vms_ok, result.runs) == (RunResult.SUCCESS, 6, 6, 2)
    assert [e for e in LOG if e.startswith(("check", "replicas"))] == [
        "check same0,c1,same2", "replicas same0,same2", "check same3,same4,c5", "replicas same3,same4"]
    assert sorted(e for e in LOG if e.startswith("+")) == ["+c1", "+c5"]
    for name in names:
        assert await replicate_runs(client, plan, name) == (0 if name.startswith("same") else 1), name
    first = REPLICA_BATCHES[0].vms[0]
    assert (first.index, first.owner, first.source_snapshot) == (0, replicate_id(plan, "same0"), "base-same0")
    assert first.point_id.startswith("same0.r")
    rows = RUN_VMS[(replication_run_id(plan), handle.first_execution_run_id)]
    assert rows == [(i, f"ca/{n}", True) for i, n in enumerate(names)]


async def test_a_failed_replication_check_leaves_every_vm_to_its_child(client: Client) -> None:
    """Workflow logic, the source check failing on purpose: nothing was claimed, so every VM
    gets its child."""
    plan = replication_plan(["same0", "nocheck"], max_jobs=2)
    result = await client.execute_workflow(ReplicationPlanRunWorkflow.run, ReplicationRunInput(plan=plan, manual=True),
                                           id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert result.result == RunResult.SUCCESS
    assert sorted(e for e in LOG if e.startswith("+")) == ["+nocheck", "+same0"]
    assert not [e for e in LOG if e.startswith("release")]


async def test_a_failed_replica_batch_lets_its_claims_go_and_gives_its_vms_no_child(client: Client) -> None:
    """Workflow logic, the replica batch failing on purpose (its retries spent): the claims it
    may hold are let go (release_batch_claims, with the children's owners), and its VMs fail
    this run without a child (one with the batch's point id would take the replica snapshot
    the batch made for its own); the changed VM still gets its child."""
    plan = replication_plan(["same0", "sameboom", "c2"], max_jobs=2)
    result = await client.execute_workflow(ReplicationPlanRunWorkflow.run, ReplicationRunInput(plan=plan, manual=True),
                                           id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    assert (result.result, result.vms_ok, result.vms_failed) == (RunResult.PARTIAL_SUCCESS, 1, 2)
    assert sorted(e for e in LOG if e.startswith("+")) == ["+c2"]
    assert [e for e in LOG if e.startswith("release")] == [
        f"release same0@{replicate_id(plan, 'same0')},sameboom@{replicate_id(plan, 'sameboom')}"]
    failed = {v.vm.vm: v.error for v in result.vms if not v.ok}
    assert set(failed) == {"same0", "sameboom"} and all("no-change batch to site b failed" in e
                                                         for e in failed.values()), failed


async def test_a_replication_run_cancelled_during_its_batch_keeps_the_carried_points_and_starts_no_child(
        client: Client) -> None:
    """Workflow logic: the replica batch holds when the run is cancelled; it is waited for,
    its VMs count as done, the changed VM is never started, the run ends CANCELLED."""
    HOLD.clear()
    plan = replication_plan(["same0", "c1", "sameslow2"], max_jobs=2)
    handle = await client.start_workflow(ReplicationPlanRunWorkflow.run, ReplicationRunInput(plan=plan, manual=True),
                                         id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    while not any(e.startswith("replicas") for e in LOG):
        await asyncio.sleep(0.1)
    await handle.cancel()
    await asyncio.sleep(1)
    HOLD.set()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    assert not [e for e in LOG if e.startswith("+")]
    rows = RUN_VMS[(replication_run_id(plan), handle.first_execution_run_id)]
    assert rows == [(0, "ca/same0", True), (1, "ca/c1", False), (2, "ca/sameslow2", True)]


async def test_a_replication_run_cancelled_during_its_check_starts_no_batch_and_no_child(client: Client) -> None:
    """Workflow logic: a cancel that reaches the run during the source check: no replica
    batch starts after it (as no backup batch starts after one), no child either."""
    HOLD.clear()
    plan = replication_plan(["same0", "slowcheck"], max_jobs=2)
    handle = await client.start_workflow(ReplicationPlanRunWorkflow.run, ReplicationRunInput(plan=plan, manual=True),
                                         id=replication_run_id(plan), task_queue=WORKFLOW_TASK_QUEUE)
    while not any(e.startswith("check") for e in LOG):
        await asyncio.sleep(0.1)
    await handle.cancel()
    await asyncio.sleep(1)
    HOLD.set()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert not [e for e in LOG if e.startswith(("replicas", "+"))]
    rows = RUN_VMS[(replication_run_id(plan), handle.first_execution_run_id)]
    assert [r[2] for r in rows] == [False, False]
