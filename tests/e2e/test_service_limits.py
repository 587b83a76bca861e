"""A service's limits hold across every plan and manual run that uses it, not per plan:
many plans started at once against a service with a limit of 2, throttled transfers, real
site worker processes. The concurrency is observed from outside the transfers (the
repository's staging areas of backups in flight) and from the catalog's slot leases; every
run still completes, byte-exact against the bytes the sources had."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from models.plans import BackupPlanSpec, RunResult
from models.requests import RestoreMode, RestoreRequest
from models.services import (
    BackupService,
    ReplicationService,
    RepositorySpec,
    TransferKind,
)
from tests.e2e.oracle import read_disk
from tests.e2e.test_replication import DR, dr, make_vm, plan, server  # noqa: F401 (fixtures)
from tests.quiet import quiet_time

LIMIT = 2
RUNS = 6


class Peak:
    """Polls a count while work runs; keeps the highest value seen."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count, self.peak, self.samples = count, 0, 0

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, self.count())
            self.samples += 1
            await asyncio.sleep(0.05)


async def observed(work: object, *counters: Peak) -> list:
    stop = asyncio.Event()
    watchers = [asyncio.create_task(c.watch(stop)) for c in counters]
    try:
        return await work  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*watchers)


async def one_vm_plans(dr: DR, count: int) -> dict[str, bytes]:
    """Plans p0..p<count-1>, each backing up its own VM vm<i> of cluster ca to repository r1;
    returns each VM's bytes (the oracle)."""
    assert dr.client is not None
    oracle = {}
    for i in range(count):
        make_vm(dr.a, f"vm{i}")
        oracle[f"vm{i}"] = read_disk(dr.a, f"vm{i}")
        await dr.client.create_backup_plan(BackupPlanSpec.model_validate({
            "name": f"p{i}", "vms": [{"cluster": "ca", "vm": f"vm{i}"}], "repository": "r1",
            "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "FOREVER"}}))
    return oracle


async def test_backup_and_restore_limits_hold_across_plans(dr: DR) -> None:  # noqa: F811
    client, repo = dr.client, dr.tmp / "repo"
    assert client is not None
    await client.create_repository(RepositorySpec(name="r1", path=str(repo), site="a"))
    # 96 IOPS of 64 KiB: 6 MiB/s per transfer, ~2 s per VM; 6 VMs would all overlap without the limit.
    dr.catalog.put_service(BackupService(name="default", site="a", max_parallel_backups=LIMIT,
                                         max_parallel_restores=LIMIT, backup_read_iops=96, restore_write_iops=96))
    oracle = await one_vm_plans(dr, RUNS)

    staging = Peak(lambda: sum(1 for d in (repo / "staging").glob("*") if d.is_dir()))
    leases = Peak(lambda: len(dr.catalog.slot_leases(TransferKind.BACKUP, "default")))
    handles = await asyncio.gather(*(client.run_backup_plan(f"p{i}") for i in range(RUNS)))
    results = await observed(asyncio.gather(*(client.plan_run_result(h) for h in handles)), staging, leases)
    assert all(r.result == RunResult.SUCCESS for r in results), results
    assert staging.peak == LIMIT and leases.peak == LIMIT, (staging.peak, leases.peak, staging.samples)
    assert dr.catalog.slot_leases() == []  # every slot was given back

    restoring = Peak(lambda: len(dr.catalog.slot_leases(TransferKind.RESTORE, "default")))
    requests = [RestoreRequest(point_id=r.vms[0].point_id, mode=RestoreMode.REBUILD, new_name=f"{r.vms[0].vm.vm}-r")
                for r in results]
    handles = await asyncio.gather(*(client.restore(req) for req in requests))
    await observed(asyncio.gather(*(client.restore_result(h) for h in handles)), restoring)
    assert restoring.peak == LIMIT, restoring.peak
    for name, data in oracle.items():
        assert read_disk(dr.a, f"{name}-r") == data, f"restore of {name} differs from the source"
    assert dr.catalog.slot_leases() == []


async def test_replication_limit_holds_across_plans(dr: DR) -> None:  # noqa: F811
    client = dr.client
    assert client is not None
    # 40 Mbit/s per pull: ~2.5 s per 12 MiB seed.
    dr.catalog.put_service(ReplicationService(name="b", site="b", max_replication_jobs=LIMIT,
                                              replication_bandwidth_mbps=40))
    oracle = {}
    for i in range(RUNS - 1):
        make_vm(dr.a, f"web{i}")
        oracle[f"web{i}"] = read_disk(dr.a, f"web{i}")
        await client.create_replication_plan(plan(f"dr{i}", vms=[{"cluster": "ca", "vm": f"web{i}"}]))
    leases = Peak(lambda: len(dr.catalog.slot_leases(TransferKind.REPLICATION, "b")))
    handles = await asyncio.gather(*(client.run_replication_plan(f"dr{i}") for i in range(RUNS - 1)))
    results = await observed(asyncio.gather(*(client.result(h) for h in handles)), leases)
    assert all(r.result == RunResult.SUCCESS for r in results), results
    assert leases.peak == LIMIT, leases.peak
    for name, data in oracle.items():
        assert read_disk(dr.b, f"{name}-replica") == data, f"replica of {name} differs from the source"
    assert dr.catalog.slot_leases() == []


async def test_a_killed_workers_slot_is_taken_over_by_the_retry(dr: DR) -> None:  # noqa: F811
    """Limit 1, two plans: the site worker is SIGKILLed while a transfer holds the slot. The
    retry of that transfer takes its own lease over (attempt 2, same slot) instead of a
    second slot or waiting for the dead lease to expire; both runs finish byte-exact and
    never more than one backup is in flight."""
    client, repo = dr.client, dr.tmp / "repo"
    assert client is not None
    await client.create_repository(RepositorySpec(name="r1", path=str(repo), site="a"))
    dr.catalog.put_service(BackupService(name="default", site="a", max_parallel_backups=1, backup_read_iops=48))
    oracle = await one_vm_plans(dr, 2)
    staging = Peak(lambda: sum(1 for d in (repo / "staging").glob("*") if d.is_dir()))
    attempts: set[tuple[str, int]] = set()

    def leases() -> int:
        held = dr.catalog.slot_leases(TransferKind.BACKUP, "default")
        attempts.update((lease.holder, lease.attempt) for lease in held)
        return len(held)

    held = Peak(leases)

    async def kill_while_held() -> str:
        for _ in range(600):
            if leases() == 1 and staging.count() == 1:
                break
            await asyncio.sleep(0.05)
        [first] = dr.catalog.slot_leases(TransferKind.BACKUP, "default")
        dr.procs["a"].kill()
        dr.start("a")
        return first.holder

    handles = await asyncio.gather(*(client.run_backup_plan(f"p{i}") for i in range(2)))
    done = await observed(asyncio.gather(kill_while_held(), *(client.plan_run_result(h) for h in handles)),
                          staging, held)
    killed, results = done[0], done[1:]
    assert all(r.result == RunResult.SUCCESS for r in results), results
    # The killed attempt's staging stays on disk, idle, until its retry resumes it; if that
    # retry starts after the dead lease expired, the other plan's backup runs meanwhile.
    assert staging.peak <= 2 and held.peak == 1, (staging.peak, held.peak)
    assert (killed, 1) in attempts and (killed, 2) in attempts, attempts  # the retry took its own lease over
    for r in results:
        name = r.vms[0].vm.vm
        h = await client.restore(RestoreRequest(point_id=r.vms[0].point_id, mode=RestoreMode.REBUILD,
                                                new_name=f"{name}-r"))
        await client.restore_result(h)
        assert read_disk(dr.a, f"{name}-r") == oracle[name], f"restore of {name} differs from the source"
    assert dr.catalog.slot_leases() == []
