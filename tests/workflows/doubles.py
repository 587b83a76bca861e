"""Activity doubles for workflow-logic tests: the activities the DR, backup and restore
workflows call, under their real type names, answering from a small in-memory `World`
(replica objects changed by the catalog's own compare-and-set check, VM power states,
snapshots, points). Every call is recorded as one readable line, e.g.
`b:set_power replica on` (site `b`) or `change_replica release ->READY` (the catalog), and a
test can make any call fail, hang or change the world (`World.on`), to reach the failure
paths the end-to-end tests cannot arrange. The world also watches the rule no failure may
break: never two running copies of a VM."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import workflows
from activities.errors import InvalidRequest, as_application_error
from drivers.catalog.errors import CatalogError
from drivers.catalog.replicas import check_change
from models import search_attributes
from models.inventory import GuestSigns, VMConfig
from models.jobs import (
    AbandonBackupInput,
    BackupBase,
    CleanupInput,
    CreateVMInput,
    FinishBackupInput,
    JobRecord,
    PowerInput,
    PrepareBackupInput,
    PrepareBackupResult,
    RecordPointInput,
    ResolvedRestore,
    RestoreDisksInput,
    RestoreDisksResult,
    RestoreInput,
    RetentionInput,
    SnapshotInput,
    SnapshotRef,
    TransferInput,
    TransferResult,
)
from models.plans import VMRef
from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue
from models.replication import ReplicaState, ReplicationObject, ReplicationPlanSpec
from models.replication_jobs import (
    Claim,
    CloneInput,
    EnsureReplicaInput,
    ObjectChange,
    ObjectRef,
    PointQuery,
    PowerStateReply,
    PullInput,
    PullResult,
    ReplicaPoint,
    ReplicaPointRecord,
    ReplicaRetentionInput,
    ResolvedObject,
    ShutdownInput,
    SnapshotDrop,
    VMAt,
)
from models.requests import LATEST, NOW
from models.restore_points import PointType

RUNNING, STOPPED = "RUNNING", "STOPPED"
RETRYABLE_KINDS = {"TransportUnreachable", "ConcurrentChange"}  # as activities/errors.py classes them
STAMP = re.compile(r"\d{8}T\d{6}Z")  # the time stamps workflows put in names: "*" in a label
PAIRS = {"source": "replica", "replica": "source"}  # the two copies of the replicated VM (their ids)
SITE_QUEUE = site_task_queue("")


@dataclass
class Call:
    label: str
    arg: Any
    attempt: int
    nth: int = 1  # the how-manieth call with this label
    rerun: bool = False  # a local activity run again: its workflow task's completion was not recorded


Action = Callable[[Call], Awaitable[None] | None]


def fail(kind: str = "DriverError", *, retryable: bool = False, attempts: int | None = None) -> Action:
    """An error of `kind` as the real activities raise it (a typed ApplicationError); with
    `attempts`, only the first so many attempts fail (the retry succeeds)."""
    def action(call: Call) -> None:
        if attempts is None or call.attempt <= attempts:
            raise ApplicationError(f"{call.label} failed on purpose", type=kind, non_retryable=not retryable)
    return action


async def hang(call: Call) -> None:
    """Hold the call until the test has cancelled its workflow (`execute(cancel_at=...)`) and
    the workflow's compensation has begun, then fail it: a long step to cancel in the middle
    of. Never left unanswered: the test server skips no time while an activity is started,
    and an activity that answers only after its workflow closed keeps the clock stopped for
    every later test. Nor answered before the workflow's cancel command is in: the test
    server then rejects that command (ACTIVITY_UNKNOWN) and the workflow task times out."""
    w = current()
    info = activity.info()
    w.held.append((info.workflow_id, info.activity_id))
    await w.let_go.wait()
    raise ApplicationError(f"{call.label} let go after the cancel", type="Abandoned", non_retryable=True)


@dataclass
class Fault:
    label: str
    occurrence: int
    action: Action
    after: bool  # after the double's effect: it happened, then the call failed


@dataclass
class World:
    """What the doubles answer from. The replica of `plan`/`vm` ("web") has the VM ids
    `source` and `replica`; a snapshot a workflow takes is named `<vm id>.s<n>`."""

    plan: str
    spec: ReplicationPlanSpec
    objects: dict[tuple[str, str], ReplicationObject]
    points: dict[str, list[ReplicaPoint]]  # each plan's replica points, oldest first
    power: dict[str, str]
    snapshots: dict[str, list[str]]
    disk: dict[str, str] = field(default_factory=dict)  # what a VM's live disk holds (a snapshot id)
    calls: list[Call] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # of every replica change applied
    applied: set[str] = field(default_factory=set)  # the change ids applied (a retried change applies once)
    violations: list[str] = field(default_factory=list)  # two running copies, ever
    unread_power_ons: list[str] = field(default_factory=list)  # a copy started without reading the other's state
    excluded: list[str] = field(default_factory=list)
    backup_points: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)  # the test cancelled the workflow
    let_go: asyncio.Event = field(default_factory=asyncio.Event)  # held calls may answer now
    held: list[tuple[str, str]] = field(default_factory=list)  # (workflow id, activity id) of held calls
    _seen: Counter[str] = field(default_factory=Counter)
    _nth: dict[tuple[str, str, str, bool], int] = field(default_factory=dict)
    _done: dict[tuple[str, str, str, bool], Any] = field(default_factory=dict)  # each call's first result
    _last_site_call: dict[str, str] = field(default_factory=dict)
    _names: dict[tuple[str, str], str] = field(default_factory=dict)
    _reached: defaultdict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    @property
    def obj(self) -> ReplicationObject:
        return self.objects[(self.plan, "web")]

    @obj.setter
    def obj(self, value: ReplicationObject) -> None:
        self.objects[(self.plan, "web")] = value

    # -- what a test arranges and reads ----------------------------------------------------

    def on(self, label: str, action: Action, *, occurrence: int = 1, after: bool = False) -> World:
        """Run `action` at the `occurrence`-th call labelled `label` (on every attempt of it)."""
        self.faults.append(Fault(label, occurrence, action, after))
        return self

    def trace(self) -> list[str]:
        """Every call, once (retries of a call are not repeated)."""
        return [c.label for c in self.calls if c.attempt == 1 and not c.rerun]

    def attempts(self, label: str, occurrence: int = 1) -> int:
        return sum(1 for c in self.calls if c.label == label and c.nth == occurrence)

    def args(self, label: str) -> list[Any]:
        return [c.arg for c in self.calls if c.label == label and c.attempt == 1]

    async def reached(self, label: str) -> None:
        await asyncio.wait_for(self._reached[label].wait(), timeout=60)

    # -- the doubles' side ---------------------------------------------------------------

    async def serve(self, name: str, detail: str, arg: Any, effect: Callable[[], Any]) -> Any:
        info = activity.info()
        site = info.task_queue.removeprefix(SITE_QUEUE) if info.task_queue != WORKFLOW_TASK_QUEUE else ""
        label = STAMP.sub("*", " ".join(filter(None, [f"{site}:{name}" if site else name, detail])))
        key = (info.workflow_id, info.workflow_run_id, info.activity_id, info.is_local)
        if info.is_local and info.attempt == 1 and key in self._done:
            # Local activities run at least once: one whose workflow task's completion the
            # server turned away (an event came in meanwhile) runs again on the replay. The
            # catalog applies each change once (change ids, upserts): so does the double.
            self.calls.append(Call(label, arg, info.attempt, self._nth[key], rerun=True))
            return self._done[key]
        if info.attempt == 1 or key not in self._nth:
            self._seen[label] += 1
            self._nth[key] = self._seen[label]
        call = Call(label, arg, info.attempt, self._nth[key])
        self.calls.append(call)
        self._reached[label].set()
        if self.cancelled.is_set() and not self.let_go.is_set():
            await self._let_go_of_held_calls()
        faults = [f for f in self.faults if f.label == label and f.occurrence == call.nth]
        for f in faults:
            if not f.after:
                await _run(f.action, call)
        try:
            result = effect()
        except (CatalogError, InvalidRequest) as e:
            raise as_application_error(e) from e
        for f in faults:
            if f.after:
                await _run(f.action, call)
        if site:
            self._last_site_call[info.workflow_id] = label
        self._done[key] = result
        return result

    async def _let_go_of_held_calls(self) -> None:
        """The first call after the cancel (compensation): the cancel command is in, so the
        held calls answer now, and this call waits until the server has their answers
        (while their workflows are still open)."""
        self.let_go.set()
        for wf_id, activity_id in self.held:
            handle = activity.client().get_workflow_handle(wf_id)
            await until(lambda: _pending(handle), lambda ids: activity_id not in ids, "a held call's answer")

    def snapshot(self, vm_id: str, name: str) -> str:
        """Take the snapshot `name` of a VM; a retried attempt finds it taken (as the real one)."""
        if (vm_id, name) not in self._names:
            self._names[(vm_id, name)] = f"{vm_id}.s{1 + sum(1 for v, _ in self._names if v == vm_id)}"
            self.snapshots.setdefault(vm_id, []).append(self._names[(vm_id, name)])
        return self._names[(vm_id, name)]

    def drop(self, vm_id: str, snapshot_id: str | None) -> None:
        if snapshot_id in self.snapshots.get(vm_id, []):
            self.snapshots[vm_id].remove(snapshot_id)

    def set_power(self, site: str, vm_id: str, on: bool) -> None:
        other = PAIRS.get(vm_id)
        if on and other is not None:
            if self.power.get(other) == RUNNING:
                self.violations.append(f"{vm_id} started while {other} runs")
            if not self._last_site_call.get(activity.info().workflow_id, "").endswith(f":power_state {other}"):
                self.unread_power_ons.append(f"{site}:set_power {vm_id} on")
        self.power[vm_id] = RUNNING if on else STOPPED

    def change(self, ch: ObjectChange) -> ReplicationObject:
        """The catalog's compare-and-set (drivers/catalog/replicas.py), on the object in memory."""
        obj = self.objects.get((ch.plan, ch.vm))
        if obj is None:
            raise InvalidRequest(f"VM {ch.vm!r} is not protected by replication plan {ch.plan!r}")
        if ch.change_id and ch.change_id in self.applied:
            return obj
        try:
            check_change(obj, ch)
        except ValueError as e:  # as the real activity says it
            raise InvalidRequest(str(e)) from None
        values: dict[str, Any] = dict(ch.updates, version=obj.version + 1)
        if ch.last_point_at is not None:
            values["last_point_at"] = ch.last_point_at
        if ch.to is not None:
            values["state"] = ch.to
        if ch.claim == Claim.TAKE:
            values["owner"] = ch.owner
        elif ch.claim == Claim.RELEASE:
            values["owner"] = None
        self.objects[(ch.plan, ch.vm)] = obj.model_copy(update=values)
        self.reasons.append(ch.reason)
        if ch.change_id:
            self.applied.add(ch.change_id)
        return self.objects[(ch.plan, ch.vm)]

    def taken_by(self, owner: str, to: ReplicaState | None = None) -> Action:
        """Another operation takes the replica's claim (and moves it `to`) before this call."""
        def action(call: Call) -> None:
            self.obj = self.obj.model_copy(update={"owner": owner, "state": to or self.obj.state,
                                                   "version": self.obj.version + 1})
        return action


async def _run(action: Action, call: Call) -> None:
    done = action(call)
    if inspect.isawaitable(done):
        await done


WORLDS: dict[str, World] = {}  # by plan: a call's world is the one its workflow id names


def current() -> World:
    """The world of the running activity: every workflow id here is `<kind>/<plan>/...`."""
    return WORLDS[activity.info().workflow_id.split("/")[1]]


def world(state: ReplicaState = ReplicaState.READY, source_site: str = "a") -> World:
    """A replicated VM `web` (site a, cluster ca -> site b, cluster cb; a plan of its own)
    with replica points p1 and p2 (newest). READY: the source runs, the replica is stopped
    at p2. FAILOVER (failed over to p1): the source is stopped, the replica runs from p1 on."""
    plan = f"p{uuid.uuid4().hex[:8]}"
    spec = ReplicationPlanSpec.model_validate({
        "name": plan, "kind": "CROSS_SITE", "source_site": source_site, "source_cluster": "ca", "target_site": "b",
        "target_cluster": "cb", "vms": [{"cluster": "ca", "vm": "web"}], "schedule": {"kind": "DAILY",
        "times": ["03:00"]}, "retention": {"kind": "COUNT", "value": 5}})
    failed_over = state == ReplicaState.FAILOVER
    obj = ReplicationObject(plan=plan, source=VMRef(cluster="ca", vm="web"), replica=VMRef(cluster="cb", vm="web-replica"),
                            state=state, version=7, source_vm_id="source", replica_vm_id="replica",
                            source_snapshot="source.base", replica_point="p2",
                            failover_snapshot="replica.p1" if failed_over else None)
    WORLDS[plan] = World(plan=plan, spec=spec, objects={(plan, "web"): obj},
                 points={plan: [ReplicaPoint(point_id="p1", snapshot_id="replica.p1"),
                                ReplicaPoint(point_id="p2", snapshot_id="replica.p2")]},
                 power={"source": STOPPED if failed_over else RUNNING, "replica": RUNNING if failed_over else STOPPED},
                 snapshots={"source": ["source.base"], "replica": ["replica.p1", "replica.p2"], "web": ["web.b1"]},
                 disk={"replica": "replica.p1" if failed_over else "replica.p2"})
    return WORLDS[plan]


F = TypeVar("F", bound=Callable[..., Any])


def double(name: str, detail: Callable[[Any, Any], str] = lambda self, arg: "") -> Callable[[F], F]:
    """The activity `name`: recorded as `name detail(arg)`, faults applied, then the method's effect."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def run(self: Doubles, arg: Any) -> Any:
            return await current().serve(name, detail(self, arg), arg, lambda: fn(self, arg))
        return activity.defn(name=name)(run)  # type: ignore[return-value]
    return wrap


def _claim(self: Doubles, ch: ObjectChange) -> str:
    """`claim ->state`, the object named (plan as P) when it is not the world's own."""
    other = "" if (ch.plan, ch.vm) == (self.world.plan, "web") else f"{ch.plan.replace(self.world.plan, 'P')}/{ch.vm}"
    return " ".join(filter(None, [other, ch.claim.value if ch.claim else "", f"->{ch.to}" if ch.to else ""]))


class Doubles:
    @property
    def world(self) -> World:
        return current()

    def activities(self) -> list[Callable[..., Any]]:
        return [getattr(self, n) for n, f in vars(type(self)).items() if hasattr(f, "__temporal_activity_definition")]


class CatalogDoubles(Doubles):
    """The catalog's activities (the workflow queue)."""

    @double("get_replica")
    def get_replica(self, ref: ObjectRef) -> ResolvedObject:
        return ResolvedObject(spec=self.world.spec, obj=self.world.objects[(ref.plan, ref.vm)])

    @double("change_replica", _claim)
    def change_replica(self, ch: ObjectChange) -> ReplicationObject:
        return self.world.change(ch)

    @double("find_replica_point", lambda self, q: q.point)
    def find_replica_point(self, q: PointQuery) -> ReplicaPoint:
        points = self.world.points[q.plan]
        if not points:
            raise InvalidRequest("no restore point yet: nothing to fail over to")
        chosen = points[-1] if q.point in (LATEST, NOW) else next((p for p in points if p.point_id == q.point), None)
        if chosen is None:
            raise InvalidRequest(f"restore point {q.point!r} is not a point of the replica")
        return chosen

    @double("record_replica_point", lambda self, r: r.point_id)
    def record_replica_point(self, r: ReplicaPointRecord) -> None:
        self.world.points.setdefault(r.plan, []).append(ReplicaPoint(point_id=r.point_id, snapshot_id=r.snapshot_id))

    @double("record_job", lambda self, j: j.status)
    def record_job(self, job: JobRecord) -> None:
        self.world.jobs.append(job.status)

    @double("create_reverse_plan")
    def create_reverse_plan(self, ref: ObjectRef) -> str:
        reverse = f"{ref.plan}-rp-{ref.vm}"
        obj = self.world.objects[(ref.plan, ref.vm)]
        self.world.objects.setdefault((reverse, obj.replica.vm), ReplicationObject(
            plan=reverse, source=obj.replica, replica=obj.source))
        return reverse

    @double("exclude_from_plan")
    def exclude_from_plan(self, ref: ObjectRef) -> None:
        self.world.excluded.append(ref.vm)

    @double("record_point", lambda self, r: r.point_id)
    def record_point(self, r: RecordPointInput) -> None:
        self.world.backup_points.append(r.point_id)

    @double("resolve_restore")
    def resolve_restore(self, inp: RestoreInput) -> ResolvedRestore:
        req = inp.request
        target = VMRef(cluster=req.target_cluster or "ca", vm=req.new_name or "db")
        return ResolvedRestore(point_id=req.point_id, repository_path="/repo", source=VMRef(cluster="ca", vm="db"),
                               target=target, site="a", config=VMConfig(name=target.vm))


class SiteDoubles(Doubles):
    """A site's activities (its queue, `abdr-site-<site>`): the VMs of its clusters."""

    def site(self) -> str:
        return activity.info().task_queue.removeprefix(SITE_QUEUE)

    @double("power_state", lambda self, at: at.vm_id)
    def power_state(self, at: VMAt) -> PowerStateReply:
        if at.vm_id not in self.world.power:
            raise ApplicationError(f"VM {at.vm_id} not found", type="NotFound", non_retryable=True)
        return PowerStateReply(state=self.world.power[at.vm_id])

    @double("shutdown_vm", lambda self, inp: inp.at.vm_id)
    def shutdown_vm(self, inp: ShutdownInput) -> PowerStateReply:
        was = self.world.power[inp.at.vm_id]
        self.world.power[inp.at.vm_id] = STOPPED
        return PowerStateReply(state=STOPPED, stopped=was == RUNNING)

    @double("set_power", lambda self, p: f"{p.vm_id} {'on' if p.on else 'off'}")
    def set_power(self, p: PowerInput) -> None:
        self.world.set_power(self.site(), p.vm_id, p.on)

    @double("rollback_vm", lambda self, at: at.snapshot_id)
    def rollback_vm(self, at: VMAt) -> None:
        assert at.snapshot_id in self.world.snapshots[at.vm_id], f"no snapshot {at.snapshot_id}"
        self.world.disk[at.vm_id] = at.snapshot_id or ""

    @double("create_snapshot", lambda self, s: s.vm_id)
    def create_snapshot(self, s: SnapshotInput) -> SnapshotRef:
        return SnapshotRef(cluster=s.cluster, vm_id=s.vm_id, snapshot_id=self.world.snapshot(s.vm_id, s.name),
                           config=VMConfig(name=s.vm_id))

    @double("drop_snapshot", lambda self, d: d.at.snapshot_id)
    def drop_snapshot(self, d: SnapshotDrop) -> None:
        self.world.drop(d.at.vm_id, d.at.snapshot_id)

    @double("pull_extents", lambda self, p: f"{p.remote.snapshot_id} -> {p.local.vm_id}")
    def pull_extents(self, p: PullInput) -> PullResult:
        self.world.disk[p.local.vm_id] = p.remote.snapshot_id or ""
        return PullResult(moved_bytes=4096, wire_bytes=1024, disk_bytes=1 << 20, extents=1)

    @double("find_vm", lambda self, vm: vm.vm)
    def find_vm(self, vm: VMRef) -> str:
        return "source" if vm.vm == "web" else vm.vm

    @double("ensure_replica")
    def ensure_replica(self, inp: EnsureReplicaInput) -> str:
        return inp.known_vm_id or "replica"

    @double("replica_retention")
    def replica_retention(self, inp: ReplicaRetentionInput) -> None:
        pass

    @double("clone_vm_at", lambda self, c: f"{c.source.snapshot_id} -> {c.name}")
    def clone_vm_at(self, c: CloneInput) -> str:
        self.world.power["copy"] = STOPPED
        return "copy"

    @double("delete_vm", lambda self, at: at.vm_id)
    def delete_vm(self, at: VMAt) -> None:
        self.world.power.pop(at.vm_id, None)

    @double("guest_signs", lambda self, at: at.vm_id)
    def guest_signs(self, at: VMAt) -> GuestSigns:
        return GuestSigns()  # this world simulates no guest: the drill compares disks

    @double("disk_digest", lambda self, at: f"{at.vm_id}@{at.snapshot_id}" if at.snapshot_id else at.vm_id)
    def disk_digest(self, at: VMAt) -> dict[str, str]:
        return {"disk0": "same"}

    # -- backup and restore ---------------------------------------------------------------

    @double("prepare_backup", lambda self, inp: inp.vm.vm)
    def prepare_backup(self, inp: PrepareBackupInput) -> PrepareBackupResult:
        return PrepareBackupResult(vm_id=inp.vm.vm, type=PointType.INCREMENTAL, reason="changes since b1",
                                   base=BackupBase(point_id="b1", snapshot_id=f"{inp.vm.vm}.b1"))

    @double("transfer_backup", lambda self, t: f"{t.snapshot.snapshot_id} -> {t.point_id}")
    def transfer_backup(self, t: TransferInput) -> TransferResult:
        return TransferResult(point_id=t.point_id, disks=[], logical_bytes=1 << 20, stored_bytes=4096)

    @double("cleanup_backup", lambda self, c: f"{c.snapshot_id or '-'} {c.point_id}")
    def cleanup_backup(self, c: CleanupInput) -> None:
        self.world.drop(c.vm_id, c.snapshot_id)

    @double("finish_backup", lambda self, f: f"{f.record.point_id} {f.release.snapshot_id if f.release else '-'}")
    def finish_backup(self, f: FinishBackupInput) -> None:
        self.world.backup_points.append(f.record.point_id)
        if f.release is not None:
            self.world.drop(f.release.vm_id, f.release.snapshot_id)

    @double("abandon_backup", lambda self, a: f"{a.cleanup.snapshot_id or '-'} {a.record.point_id}")
    def abandon_backup(self, a: AbandonBackupInput) -> bool:
        if a.record.point_id in self.world.backup_points:
            return False  # recorded: a real point, kept
        self.world.drop(a.cleanup.vm_id, a.cleanup.snapshot_id)
        return True

    @double("release_snapshot", lambda self, c: c.snapshot_id or "")
    def release_snapshot(self, c: CleanupInput) -> None:
        self.world.drop(c.vm_id, c.snapshot_id)

    @double("apply_retention", lambda self, r: r.vm.vm)
    def apply_retention(self, r: RetentionInput) -> None:
        pass

    @double("apply_config", lambda self, s: s.vm_id)
    def apply_config(self, s: SnapshotRef) -> None:
        pass

    @double("create_vm_for_restore", lambda self, c: c.config.name)
    def create_vm_for_restore(self, c: CreateVMInput) -> SnapshotRef:
        self.world.power[c.config.name] = STOPPED
        return SnapshotRef(cluster=c.cluster, vm_id=c.config.name, snapshot_id="", config=c.config)

    @double("restore_disks", lambda self, r: f"{r.restore.point_id} -> {r.vm_id}")
    def restore_disks(self, r: RestoreDisksInput) -> RestoreDisksResult:
        return RestoreDisksResult(written_bytes=4096, total_bytes=1 << 20)


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    """The time-skipping server knows no custom search attributes until told (TEMPORAL-NOTES)."""
    try:
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in search_attributes.ALL}))
    except RPCError as e:
        if e.status != RPCStatusCode.ALREADY_EXISTS:
            raise


def site_worker(env: WorkflowEnvironment, site: str) -> Worker:
    return Worker(env.client, task_queue=site_task_queue(site), activities=SiteDoubles().activities())


@asynccontextmanager
async def workers(env: WorkflowEnvironment, sites: Iterable[str] = ("a", "b")) -> AsyncIterator[Client]:
    """The real workflows (sandboxed, as in production) on the workflow queue with the
    catalog doubles, and the site doubles on each of `sites`' queues."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(Worker(env.client, task_queue=WORKFLOW_TASK_QUEUE, workflows=workflows.ALL,
                                               activities=CatalogDoubles().activities()))
        for site in sites:
            await stack.enter_async_context(site_worker(env, site))
        yield env.client


async def execute(client: Client, w: World, run: Any, arg: Any, wf_id: str, *,
                  cancel_at: str | None = None) -> WorkflowFailureError | None:
    """Run a workflow to its end against the doubles (cancelled once it reaches the call
    `cancel_at`); its failure, or None."""
    handle = await client.start_workflow(run, arg, id=wf_id, task_queue=WORKFLOW_TASK_QUEUE)
    if cancel_at is not None:
        await w.reached(cancel_at)
        if not w.held:  # cancel between activities: one that ends while the cancel goes in makes the
            await until_no_activity_pending(handle)  # test server reject the cancel (see hang)
        w.cancelled.set()
        await handle.cancel()
    try:
        await handle.result()
    except WorkflowFailureError as e:
        return e
    finally:
        w.let_go.set()  # a held call nothing followed: let it end (it may stop the clock: see hang)
    return None


async def _pending(handle: WorkflowHandle[Any, Any], by: str = "id") -> list[str]:
    """The workflow's pending activities, by activity id or type."""
    return [a.activity_id if by == "id" else a.activity_type.name
            for a in (await handle.describe()).raw_description.pending_activities]


async def until(read: Callable[[], Awaitable[list[str]]], done: Callable[[list[str]], bool], what: str) -> None:
    """Poll the server until `done(read())` (a minute at most): waits for a state, not a time."""
    for _ in range(1200):
        if done(await read()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited a minute for {what}")


async def pending(handle: WorkflowHandle[Any, Any], activity_type: str) -> None:
    """Wait until the workflow has scheduled an activity of `activity_type`."""
    await until(lambda: _pending(handle, by="type"), lambda types: activity_type in types, activity_type)


async def until_no_activity_pending(handle: WorkflowHandle[Any, Any]) -> None:
    await until(lambda: _pending(handle), lambda ids: not ids, "the workflow's activities to end")


def root_error(err: BaseException) -> BaseException:
    """What a failure chain (WorkflowFailureError -> ChildWorkflowError -> ActivityError ->
    ...) comes down to: its first ApplicationError (an activity's own Python cause, chained
    below it, is not part of the answer), else its innermost error."""
    while not isinstance(err, ApplicationError) and getattr(err, "cause", None) is not None:
        err = err.cause  # type: ignore[attr-defined]
    return err


def assert_failed(failed: WorkflowFailureError | None, kind: str) -> ApplicationError:
    """The workflow failed with an error of `kind`: non-retryable (a refusal, an injected
    final failure), or a retryable one its retry policy gave up on."""
    assert failed is not None, "the workflow should have failed"
    root = root_error(failed)
    assert isinstance(root, ApplicationError) and root.type == kind, root
    assert root.non_retryable or kind in RETRYABLE_KINDS, f"{kind} should be final"
    return root


def assert_cancelled(failed: WorkflowFailureError | None) -> None:
    assert failed is not None and isinstance(failed.cause, CancelledError), failed


def runbook_until(runbook: list[str], label: str, occurrence: int = 1) -> list[str]:
    """The runbook's calls up to and including the `occurrence`-th `label`."""
    at = [i for i, step in enumerate(runbook) if step == label][occurrence - 1]
    return runbook[:at + 1]

