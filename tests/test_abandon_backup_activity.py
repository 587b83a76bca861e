"""The end of a backup that failed (activities/backup.py::abandon_backup), on real parts: a
local cluster's VM, a real repository and the catalog on SQLite and PostgreSQL, the
activities run in Temporal's ActivityEnvironment. A point the catalog did not record is
abandoned for good (its files and new snapshot go, a late record is refused, the previous
point still restores byte for byte); a recorded one is left whole."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.backup import BackupActivities
from activities.catalog import record_point
from activities.resources import Resources
from drivers.catalog.store import Catalog, StateConflict
from drivers.local import LocalDriver
from drivers.repository import Repository
from drivers.repository.errors import PointNotFound
from models.inventory import Cluster, Consistency, DiskSpec, Site, VMConfig
from models.jobs import (
    AbandonBackupInput,
    CleanupInput,
    PrepareBackupInput,
    RecordPointInput,
    SnapshotInput,
    TransferInput,
)
from models.plans import VMRef
from models.restore_points import PointCreation
from models.services import RepositorySpec

MiB = 1 << 20
SIZE = 4 * MiB
VM = VMRef(cluster="c1", vm="web")


@dataclass
class Site1:
    acts: BackupActivities
    catalog: Catalog
    driver: LocalDriver
    repo: Repository
    vm_id: str


@pytest.fixture
def site(catalog_url: str, tmp_path: Path) -> Iterator[Site1]:
    catalog = Catalog(catalog_url)
    catalog.add_site(Site(name="default"))
    catalog.add_cluster(Cluster(name="c1", site="default", driver="local", endpoint=str(tmp_path / "c1")))
    repo = Repository.init(tmp_path / "repo")
    catalog.add_repository(RepositorySpec(name="r1", path=str(repo.root), site="default"))
    res = Resources(catalog, "default")
    driver = res.driver("c1")
    assert isinstance(driver, LocalDriver)
    vm = driver.create_vm(VMConfig(name="web", disks=[DiskSpec(name="disk0", size_bytes=SIZE)]))
    yield Site1(BackupActivities(res), catalog, driver, repo, vm.id)
    catalog.close()


def write(s: Site1, seed: str) -> bytes:
    """New contents for the VM's disk; returns them (the oracle of a point taken now)."""
    data = hashlib.shake_256(seed.encode()).digest(SIZE)
    with s.driver.open_disk(s.vm_id, "disk0", writable=True) as h:
        h.write(0, data)
    return data


def back_up(s: Site1, point_id: str) -> tuple[RecordPointInput, CleanupInput]:
    """prepare, snapshot and transfer, as VMBackup runs them: the point is committed in the
    repository; what finish_backup would record, and what an abandon would delete."""
    env = ActivityEnvironment()
    prep = env.run(s.acts.prepare_backup, PrepareBackupInput(plan="p", vm=VM, force_full=False, full_reason=""))
    snap = env.run(s.acts.create_snapshot, SnapshotInput(cluster="c1", vm_id=s.vm_id, name=f"abdr-{point_id}",
                                                         consistency=Consistency.CRASH_CONSISTENT))
    now = datetime.now(UTC)
    moved = env.run(s.acts.transfer_backup, TransferInput(
        plan="p", point_id=point_id, repository_path=str(s.repo.root), snapshot=snap, type=prep.type,
        creation=PointCreation.AUTO, base=prep.base, created_at=now))
    record = RecordPointInput(plan="p", vm=VM, vm_config=snap.config, repository="r1", point_id=point_id,
                              type=prep.type, creation=PointCreation.AUTO, created_at=now,
                              snapshot_id=snap.snapshot_id, base_point_id=prep.base.point_id,
                              logical_bytes=moved.logical_bytes, stored_bytes=moved.stored_bytes)
    return record, CleanupInput(cluster="c1", vm_id=s.vm_id, snapshot_id=snap.snapshot_id,
                                repository_path=str(s.repo.root), point_id=point_id)


def restored(s: Site1, point_id: str) -> bytes:
    out = bytearray(SIZE)

    def sink(offset: int, data: bytes) -> None:
        out[offset:offset + len(data)] = data

    s.repo.restore_disk(point_id, "disk0", sink)
    return bytes(out)


def snapshots(s: Site1) -> set[str]:
    return {snap.id for snap in s.driver.list_snapshots(s.vm_id)}


def test_an_unrecorded_point_is_abandoned_and_the_vm_left_as_before(site: Site1) -> None:
    s = site
    first = write(s, "first")
    record0, _ = back_up(s, "pt-0")
    record_point(s.catalog, record0)
    kept = snapshots(s)
    write(s, "second")
    record1, cleanup1 = back_up(s, "pt-1")
    assert snapshots(s) == kept | {cleanup1.snapshot_id}
    # finish_backup failed before its record: the workflow runs abandon_backup.
    assert ActivityEnvironment().run(s.acts.abandon_backup, AbandonBackupInput(record=record1, cleanup=cleanup1))
    with pytest.raises(PointNotFound):
        s.repo.get_point("pt-1")
    assert snapshots(s) == kept  # the new snapshot is gone, the base kept
    assert [p.id for p in s.catalog.list_restore_points(plan="p")] == ["pt-0"]
    with pytest.raises(StateConflict, match="'pt-1' was abandoned"):
        record_point(s.catalog, record1)  # a late finish_backup from a worker that lost touch
    assert restored(s, "pt-0") == first
    # A retry of the abandon (its answer lost) finds it done.
    assert ActivityEnvironment().run(s.acts.abandon_backup, AbandonBackupInput(record=record1, cleanup=cleanup1))


def test_a_recorded_point_is_left_whole(site: Site1) -> None:
    s = site
    data = write(s, "only")
    record, cleanup = back_up(s, "pt-0")
    record_point(s.catalog, record)  # finish_backup recorded it, then failed (say, at retention)
    assert not ActivityEnvironment().run(s.acts.abandon_backup, AbandonBackupInput(record=record, cleanup=cleanup))
    assert cleanup.snapshot_id in snapshots(s)
    assert [p.id for p in s.catalog.list_restore_points(plan="p")] == ["pt-0"]
    assert restored(s, "pt-0") == data
