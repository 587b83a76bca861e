"""A plan run in pages: a run over more VMs than one workflow history should hold goes
through them a page at a time and continues as new between pages (the shape of
temporalio/samples-python's `batch_sliding_window`). Each VM's result goes to the catalog
(`plan_run_vms`, read back a page at a time); the run's own result is a bounded summary."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from models.inventory import Strict

# VMs one workflow run of a plan starts before it continues as new: ~10 history events and
# ~400 bytes of result per VM keep a page at ~5,000 events and ~200 KB, far from Temporal's
# 51,200 events and 2 MB (its warning is at 256 KB).
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 500  # and at most: a page's no-change batch names each of its VMs in one activity input
RESULTS_BATCH = 100  # per-VM results written to the catalog per activity call (~40 KB)


class RunPage(Strict):
    """Where a run that continued as new stands: carried from one workflow run of the chain
    to the next (small and fixed in size whatever the plan's size)."""

    offset: int = Field(ge=0, description="VMs of the plan before this page (run and recorded).")
    total: int = Field(ge=0, description="The plan's VMs when the run began.")
    first_run_id: str = Field(description="The chain's first run: the run's job row and results are under it.")
    started_at: datetime = Field(description="The run's start: its point ids' stamp.")
    deadline: datetime | None = Field(default=None, description="The window's end the run stops at, if any.")
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    runs: int = Field(default=1, ge=1, description="Workflow runs of the chain so far.")


class RunSummary(Strict):
    """The counts every plan-run result carries (the new fields of PlanRunResult and
    ReplicationRunResult; 0 in results recorded before them). `vms` holds every VM's
    result when the run took one page; a run of more pages leaves it empty (`paged`) and
    its VMs' results are read from the catalog (admin op `list_run_vms`)."""

    vms_total: int = 0
    vms_ok: int = 0
    vms_failed: int = 0
    vms_cancelled: int = 0
    runs: int = 1
    paged: bool = False
    run_id: str = Field(default="", description="The run's first workflow run: its VMs' results in the catalog "
                        "are under it.")


class RunVMRow(Strict):
    index: int = Field(ge=0, description="The VM's position in the run (the plan's order).")
    vm: str
    ok: bool
    result: dict


class RunVMResults(Strict):
    """A batch of one run's per-VM results for the catalog (idempotent: keyed by index)."""

    workflow_id: str
    run_id: str
    plan: str
    rows: list[RunVMRow] = Field(max_length=RESULTS_BATCH)


class RunVMQuery(Strict):
    workflow_id: str
    run_id: str
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=RESULTS_BATCH, ge=1, le=RESULTS_BATCH)
    failed_only: bool = False


class RunVMPage(Strict):
    rows: list[RunVMRow]
    total: int
    next_offset: int | None = None
