"""The plan-run runbook backup and replication plans share: resolve the plan; gate the run
(paused, outside its window); record it RUNNING; run one child workflow per VM through a
sliding window of the plan's job limit, stopped at the window's end where the plan says
so; aggregate; record the outcome. A plan kind subclasses `PlanRun` and fills in its hooks
(workflows/plan_run.py, workflows/replication_plan.py). Runs started before this skeleton
replay workflows/v1_plan_runs.py (`workflow.patched(SKELETON)` is false for them)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import CatalogApi
    from models.jobs import Operation
    from models.plan_pages import DEFAULT_PAGE_SIZE, RESULTS_BATCH, RunPage, RunVMResults, RunVMRow
    from models.plans import RunResult, VMRef, Window
    from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue
    from models.schedule import window_close

from workflows.backup import SITE_HEARTBEAT, failure_text
from workflows.common import (
    SKIPPED_BUSY,
    A,
    R,
    before_deadline,
    catalog,
    phase,
    record_job,
    retry,
    start_plan_run,
    tag,
)
from workflows.window import SlidingWindow

SKELETON = "plan-run-skeleton"
# A cancelled run (`abdr job cancel`) stops its VMs the way a window's end does, waits for
# them to clean up, records the run, and only then ends CANCELLED. Runs before this marker
# ended at once, their children terminated mid-step (a backup's snapshot left behind).
CANCEL_STOPS_VMS = "plan-run-cancel-stops-vms"
# A run goes through its VMs a page at a time (continue-as-new between pages), each VM's
# result written to the catalog, its own result a bounded summary (models/plan_pages.py).
# Runs before this marker held every VM in one history and returned every result.
PAGES = "plan-run-pages"
# A page's VMs a plan kind can give their point without a child workflow (backup: the
# unchanged ones, `carry`) are done first, in one activity per site; only the others get
# children. Runs before this marker started a child for every VM.
CARRY = "plan-run-carry-unchanged"
STOPPED = "stopped at the window's end"
NOT_STARTED = "not started: the window closed"
CANCELLED = "stopped: the run was cancelled"
NOT_STARTED_CANCELLED = "not started: the run was cancelled"
NOTHING_TO_PROTECT = "nothing to protect: the plan resolved to no VMs"


class RunInput(Protocol):
    plan: str
    manual: bool
    page_size: int | None
    page: RunPage | None

    def model_copy(self, *, update: dict[str, Any]) -> Any: ...


class VMResult(Protocol):
    ok: bool
    vm: VMRef

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Gate:
    """What decides whether a due run runs, and how wide it fans out."""

    paused: bool
    window: Window | None
    time_zone: str
    max_jobs: int


@dataclass(frozen=True)
class Child:
    """One VM's child workflow (its run method, input, deterministic id and UI summary)."""

    run: Any
    arg: Any
    id: str
    summary: str


InT = TypeVar("InT", bound=RunInput)
PlanT = TypeVar("PlanT")
ItemT = TypeVar("ItemT")
ResT = TypeVar("ResT", bound=VMResult)


async def batch_call(activity: Callable[[Any, A], R], arg: A, site: str,
                     summary: str, max_retries: int, retry_interval_s: int) -> R:
    """One site activity of a page's batch (seconds per hundred VMs; it heartbeats)."""
    return await workflow.execute_activity_method(
        activity, arg, task_queue=site_task_queue(site), summary=summary, start_to_close_timeout=timedelta(hours=1),
        heartbeat_timeout=SITE_HEARTBEAT, retry_policy=retry(max_retries, retry_interval_s))


def outcome(results: Sequence[VMResult]) -> RunResult:
    """SUCCESS when every VM got its point, PARTIAL_SUCCESS when some did, else FAILED.
    An empty run is FAILED too: a plan protects at least one VM (models.plans refuses one
    without), so a run that resolved to none protected nothing the user asked for and made
    no point; SUCCESS would tell the user their VMs are protected when nothing is."""
    return counted_outcome(sum(r.ok for r in results), len(results))


def counted_outcome(ok: int, total: int) -> RunResult:
    if total and ok == total:
        return RunResult.SUCCESS
    return RunResult.PARTIAL_SUCCESS if ok else RunResult.FAILED


async def tick(operation: Operation, plan: str, run: Any, arg: Any, wf_id: str, noun: str, result_type: type) -> Any:
    """A schedule's action: start the plan's run under its one id and wait for it, or
    return at once, skipped, while the previous run is still going."""
    tag(operation, plan=plan, phase="tick")
    handle = await start_plan_run(run, arg, wf_id, f"scheduled run of {noun} plan {plan}")
    if handle is None:
        return result_type(plan=plan, result=RunResult.RUNNING, skipped_reason=SKIPPED_BUSY)
    return await handle


class PlanRun(ABC, Generic[InT, PlanT, ItemT, ResT]):
    """The runbook; subclasses give the hooks below and a `@workflow.run` that calls `execute`."""

    operation: ClassVar[Operation]
    noun: ClassVar[str]  # "backup" / "replication": messages and the window's timer
    phase_name: ClassVar[str]
    result_type: ClassVar[type]

    def __init__(self) -> None:
        self._done: list[ResT] = []
        self._total = 0
        self._before = 0  # VMs done in the earlier runs of a paged run's chain
        self._closing = False  # the window closed (or the run was cancelled): a child's failure is its cancellation
        self._stopped, self._not_started_why = STOPPED, NOT_STARTED  # why a VM stopped or never started

    @workflow.query
    def progress(self) -> dict:
        return {"vms_total": self._total, "vms_done": self._before + len(self._done),
                "results": [r.model_dump(mode="json") for r in self._done]}  # this page's: bounded

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    async def resolve(self, inp: InT) -> PlanT:
        """Read the plan from the catalog, once, at the run's start."""

    @abstractmethod
    async def record_result(self, plan: str, result: RunResult, at: datetime) -> None:
        """The plan's last result, as its listing shows it."""

    @abstractmethod
    def gate(self, plan: PlanT) -> Gate: ...

    @abstractmethod
    def stops_at_close(self, plan: PlanT) -> bool:
        """Whether VMs still running at the window's end are stopped."""

    @abstractmethod
    def items(self, plan: PlanT) -> Sequence[ItemT]:
        """The run's VMs, in the order they start."""

    def page(self, plan: PlanT, offset: int, size: int) -> tuple[Sequence[ItemT], int]:
        """This page's VMs (`size` from `offset`) and the plan's count of VMs. Here: a slice
        of everything `resolve` read; a plan kind whose resolve reads only the page overrides it."""
        items = self.items(plan)
        return items[offset:offset + size], len(items)

    @abstractmethod
    def vm(self, item: ItemT) -> VMRef: ...

    @abstractmethod
    def child(self, plan: PlanT, item: ItemT, inp: InT, stamp: str) -> Child | str:
        """The VM's child workflow, or why the VM fails without one."""

    @abstractmethod
    def failed(self, vm: VMRef, error: str, cancelled: bool) -> ResT: ...

    def carries(self, plan: PlanT, inp: InT) -> bool:
        """Whether `carry` may give some of this run's VMs their result without a child."""
        return False

    async def carry(self, plan: PlanT, children: Sequence[Child | str], deadline: datetime | None) -> dict[int, ResT]:
        """The page's VMs (by index) done without a child; it never raises (the others get
        children). None starts after `deadline`."""
        return {}

    async def site_batches(self, children: Sequence[Child | str], site: Callable[[Child], str],
                           batch: Callable[[str, list[tuple[int, Child]]], Awaitable[dict[int, ResT]]],
                           deadline: datetime | None) -> dict[int, ResT]:
        """`carry` by site: the page's VMs that have a child, grouped by the site whose
        `batch` does them, one site in turn; no batch starts after a cancel or the window's
        end (their VMs are not started), and a failed one leaves its VMs to their children."""
        by_site: dict[str, list[tuple[int, Child]]] = {}
        for i, c in enumerate(children):
            if isinstance(c, Child):
                by_site.setdefault(site(c), []).append((i, c))
        out: dict[int, ResT] = {}
        for name, group in sorted(by_site.items()):
            if self._closing or (deadline is not None and workflow.now() >= deadline):
                break
            try:
                out.update(await batch(name, group))
            except ActivityError as e:  # every VM of the batch not carried gets its child
                workflow.logger.warning("no-change batch of site %s failed: %s", name, failure_text(e))
        return out

    def gated(self, inp: InT, gate: Gate, now: datetime) -> tuple[Any, datetime | None]:
        """(the skipped run's result, or None; when the window closes, or None). Only a
        scheduled run is gated: a manual one runs paused and outside its window."""
        if inp.manual:
            return None, None
        if gate.paused:
            return self.result_type(plan=inp.plan, result=RunResult.PAUSED, skipped_reason="plan is paused"), None
        if gate.window is None:
            return None, None
        closes = window_close(gate.window, gate.time_zone, now)
        if closes is None:
            reason = f"skipped: {now:%H:%M} UTC is outside the window"
            workflow.set_current_details(reason)
            return self.result_type(plan=inp.plan, result=RunResult.NEVER_EXECUTE, skipped_reason=reason), None
        return None, closes

    # -- the runbook ---------------------------------------------------------------------
    async def execute(self, inp: InT) -> Any:
        if workflow.patched(PAGES):
            return await self.execute_paged(inp)
        tag(self.operation, plan=inp.plan, phase="resolve")
        plan = await self.resolve(inp)
        now = workflow.now()
        gate = self.gate(plan)
        skipped, closes = self.gated(inp, gate, now)
        if skipped is not None:
            return skipped
        deadline = closes if closes is not None and self.stops_at_close(plan) else None
        await record_job(self.operation, "RUNNING", plan=inp.plan)
        await self.record_result(inp.plan, RunResult.RUNNING, now)
        items = self.items(plan)
        self._total = len(items)
        phase(self.phase_name, f"{len(items)} VMs, {gate.max_jobs} at a time"
              + (f", window closes {closes:%Y-%m-%d %H:%M} UTC" if closes else ""))
        job = partial(self._one, plan, inp, now.strftime("%Y%m%dT%H%M%SZ"))
        window = SlidingWindow(items, gate.max_jobs, job, self._not_started)
        idle = window.start()
        cancelled = False
        try:
            if deadline is not None and not await before_deadline(idle, deadline, f"{self.noun} window closes"):
                self._closing = True
                phase("window-closed", f"stopping the running {self.noun}s (each cleans up after itself)")
                idle = window.stop()
            await idle
        except asyncio.CancelledError:
            if not workflow.patched(CANCEL_STOPS_VMS):
                raise
            cancelled, self._closing = True, True
            self._stopped, self._not_started_why = CANCELLED, NOT_STARTED_CANCELLED
            phase("cancelled", f"stopping the running {self.noun}s (each cleans up after itself)")
            await window.stop()
        results = window.results()
        result = outcome(results)
        final = self.result_type(plan=inp.plan, result=result, vms=results,
                                 skipped_reason="" if results else NOTHING_TO_PROTECT)
        await self.record_result(inp.plan, result, workflow.now())
        await record_job(self.operation, "CANCELLED" if cancelled else result.value, plan=inp.plan,
                         result=final.model_dump(mode="json"), finished=True)
        phase("cancelled" if cancelled else "done", result.value)
        if cancelled:
            raise asyncio.CancelledError()  # the run ends CANCELLED, as asked (its result is in the catalog)
        return final

    async def execute_paged(self, inp: InT) -> Any:
        """The runbook a page at a time: the first run of the chain gates and records the run
        RUNNING; each run resolves its page, runs it through the sliding window, writes its
        VMs' results to the catalog and continues as new with the next page; the last one
        records the run's end. A kill at any point resumes in the same page: children have
        deterministic ids and the results' writes are keyed by the VM's index."""
        page, size = inp.page, inp.page_size or DEFAULT_PAGE_SIZE
        first = page is None
        tag(self.operation, plan=inp.plan, phase="resolve")
        plan = await self.resolve(inp.model_copy(update={"page_size": size}))
        now = workflow.now()
        if page is None:
            gate = self.gate(plan)
            skipped, closes = self.gated(inp, gate, now)
            if skipped is not None:
                return skipped
            items, total = self.page(plan, 0, size)
            page = RunPage(offset=0, total=total, first_run_id=workflow.info().run_id, started_at=now,
                           deadline=closes if closes is not None and self.stops_at_close(plan) else None)
            await record_job(self.operation, "RUNNING", plan=inp.plan, run_id=page.first_run_id)
            await self.record_result(inp.plan, RunResult.RUNNING, now)
        else:
            items, _ = self.page(plan, page.offset, size)
        self._total, self._before = page.total, page.offset
        max_jobs = self.gate(plan).max_jobs
        phase(self.phase_name, f"{page.total} VMs, {max_jobs} at a time"
              + (f", VMs {page.offset + 1}-{page.offset + len(items)} in this run" if page.total > size else "")
              + (f", window closes {page.deadline:%Y-%m-%d %H:%M} UTC" if page.deadline else ""))
        stamp = page.started_at.strftime("%Y%m%dT%H%M%SZ")
        late = page.deadline is not None and now >= page.deadline  # a later page, after the window's end
        children: list[Child | str] | None = None
        carrying: asyncio.Future[dict[int, ResT]] | None = None
        if not late and items and self.carries(plan, inp) and workflow.patched(CARRY):
            children = [self.child(plan, item, inp, stamp) for item in items]
            carrying = asyncio.ensure_future(self.carry(plan, children, page.deadline))
        window: Fanout[ItemT, ResT] | None = None
        cancelled = False
        try:
            if carrying is not None:
                # Shielded: a cancel waits for the batch (seconds, no data read), whose points are made.
                self._done.extend((await asyncio.shield(carrying)).values())
                late = page.deadline is not None and workflow.now() >= page.deadline  # the window closed meanwhile
            window = Fanout(self, plan, inp, stamp, items, max_jobs, children, carrying)
            if late:
                self._closing = True
                idle = window.stop()
            else:
                idle = window.start()
                if page.deadline is not None and not await before_deadline(idle, page.deadline,
                                                                          f"{self.noun} window closes"):
                    self._closing = True
                    phase("window-closed", f"stopping the running {self.noun}s (each cleans up after itself)")
                    idle = window.stop()
            await idle
        except asyncio.CancelledError:
            cancelled, self._closing = True, True
            self._stopped, self._not_started_why = CANCELLED, NOT_STARTED_CANCELLED
            phase("cancelled", f"stopping the running {self.noun}s (each cleans up after itself)")
            if carrying is not None and not carrying.done():
                self._done.extend((await carrying).values())
            window = window or Fanout(self, plan, inp, stamp, items, max_jobs, children, carrying)
            await window.stop()
        results = window.results()
        await self._keep(inp.plan, page, results)
        page = page.model_copy(update={
            "offset": page.offset + len(results), "ok": page.ok + sum(r.ok for r in results),
            "failed": page.failed + sum(not r.ok for r in results),
            "cancelled": page.cancelled + sum(bool(getattr(r, "cancelled", False)) for r in results)})
        if not cancelled and results and page.offset < page.total:
            workflow.continue_as_new(inp.model_copy(update={"page": page.model_copy(update={"runs": page.runs + 1}),
                                                            "page_size": size}))
        whole = first and page.offset == page.total  # one page held the whole run: its result lists every VM
        return await self._finish(inp, page, results if whole else [], cancelled, whole)

    async def _keep(self, plan: str, page: RunPage, results: Sequence[ResT]) -> None:
        """This page's VM results into the catalog, a batch per activity (bounded payloads)."""
        info = workflow.info()
        for start in range(0, len(results), RESULTS_BATCH):
            rows = [RunVMRow(index=page.offset + start + i, vm=str(r.vm), ok=r.ok,
                             result=r.model_dump(mode="json"))
                    for i, r in enumerate(results[start:start + RESULTS_BATCH])]
            await catalog(CatalogApi.record_run_vms, RunVMResults(workflow_id=info.workflow_id,
                                                                  run_id=page.first_run_id, plan=plan, rows=rows),
                          f"results of VMs {rows[0].index + 1}-{rows[-1].index + 1}")

    async def _finish(self, inp: InT, page: RunPage, results: Sequence[ResT], cancelled: bool, whole: bool) -> Any:
        """The run's end: its bounded summary (every VM's result too when it took one page)."""
        result = counted_outcome(page.ok, page.total)
        final = self.result_type(
            plan=inp.plan, result=result, vms=list(results) if whole else [],
            skipped_reason="" if page.total else NOTHING_TO_PROTECT, vms_total=page.total, vms_ok=page.ok,
            vms_failed=page.total - page.ok, vms_cancelled=page.cancelled + (page.total - page.offset),
            runs=page.runs, paged=not whole, run_id=page.first_run_id)
        await self.record_result(inp.plan, result, workflow.now())
        await record_job(self.operation, "CANCELLED" if cancelled else result.value, plan=inp.plan,
                         result=final.model_dump(mode="json"), finished=True, run_id=page.first_run_id)
        phase("cancelled" if cancelled else "done", result.value)
        if cancelled:
            raise asyncio.CancelledError()  # the run ends CANCELLED, as asked (its result is in the catalog)
        return final

    async def _one(self, plan: PlanT, inp: InT, stamp: str, item: ItemT) -> ResT:
        return await self._listed(item, self.child(plan, item, inp, stamp))

    async def _listed(self, item: ItemT, child: Child | str) -> ResT:
        result = await self._run_child(self.vm(item), child)
        self._done.append(result)
        return result

    async def _run_child(self, vm: VMRef, child: Child | str) -> ResT:
        if isinstance(child, str):
            return self.failed(vm, child, False)
        try:
            return await workflow.execute_child_workflow(
                child.run, child.arg, id=child.id, task_queue=WORKFLOW_TASK_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, static_summary=child.summary)
        except asyncio.CancelledError:
            # The window closed (or the run was cancelled): the child got a cancel request and
            # has cleaned up (a parent waits for its children's cancellation to complete by default).
            return self.failed(vm, self._stopped, True)
        except WorkflowAlreadyStartedError:
            return self.failed(vm, f"a {self.noun} of {vm} is already running", False)
        except Exception as e:  # ChildWorkflowError: the VM's run failed
            return self.failed(vm, self._stopped if self._closing else failure_text(e), self._closing)

    def _not_started(self, item: ItemT) -> ResT:
        return self.failed(self.vm(item), self._not_started_why, True)


class Fanout(Generic[ItemT, ResT]):
    """A page's sliding window of children. With `children` (the carry marker) only over the
    VMs `carrying` did not do, each with the child made for it before the batch; its results
    are the page's, in the page's order, the carried VMs' among them."""

    def __init__(self, run: PlanRun[Any, Any, ItemT, ResT], plan: Any, inp: Any, stamp: str, items: Sequence[ItemT],
                 size: int, children: Sequence[Child | str] | None,
                 carrying: asyncio.Future[dict[int, ResT]] | None) -> None:
        self._items = items
        self._carried = carrying.result() if carrying is not None else {}
        self._rest = [i for i in range(len(items)) if i not in self._carried]
        if children is None:
            self._window: SlidingWindow[Any, ResT] = SlidingWindow(items, size, partial(run._one, plan, inp, stamp),
                                                                   run._not_started)
        else:
            listed = children
            self._window = SlidingWindow(self._rest, size, lambda i: run._listed(items[i], listed[i]),
                                         lambda i: run._not_started(items[i]))
        self._children = children

    def start(self) -> asyncio.Future[None]:
        return self._window.start()

    def stop(self) -> asyncio.Future[None]:
        return self._window.stop()

    def results(self) -> list[ResT]:
        if self._children is None:
            return self._window.results()
        merged = dict(self._carried)
        merged.update(zip(self._rest, self._window.results(), strict=True))
        return [merged[i] for i in range(len(self._items))]
