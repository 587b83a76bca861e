"""Replication activities of a site worker: replica VMs, snapshots, power and the pull of
extents from the other site's transport. The same pull serves replication (the target
pulls from the source), failback and reprotect (the original pulls from the replica)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import replica_carry
from activities.errors import InvalidRequest, translate_errors
from activities.heartbeat import Checkpoint, resume_details
from activities.resources import Resources
from activities.slots import SlotRequest, holds_slot
from drivers.base import ANSWER_WITHIN, ClonesFromSnapshot, ClusterUnreachable, NotFound, OperationTimeout
from drivers.transport.client import TransportClient, batches
from drivers.transport.protocol import ExtentsRequest, ReadRequest
from models.activity_api import ReplicationApi
from models.inventory import NIC, GuestSigns, PowerState, ShutdownMode, VMConfig
from models.replication_jobs import (
    CloneInput,
    EnsureReplicaInput,
    PowerStateReply,
    PullInput,
    PullProgress,
    PullResult,
    ReplicaCarryInput,
    ReplicaCarryResult,
    ReplicaCheckInput,
    ReplicaCheckResult,
    ReplicaRetentionInput,
    ShutdownInput,
    SnapshotDrop,
    VMAt,
)
from models.restore_points import PointState
from models.retention import ExpiredPoints, expired_points

T = TypeVar("T")


PREFETCH = 3  # batches in flight ahead of the writer (each at most MAX_READ_BYTES)
PROBE_PATIENCE_S = 8.0  # well inside the workflows' 20 s probe: the site answers that its AOC does not
CONSOLE_TAIL = 1000  # characters of a guest's console a drill's evidence keeps (the workflow keeps as many)


def prefetch(fetch: Callable[[T], bytes], items: list[T], depth: int) -> Iterator[bytes]:
    """fetch(item) for each item, in order, with up to `depth` fetches running ahead."""
    with ThreadPoolExecutor(depth, thread_name_prefix="abdr-pull") as pool:
        pending: deque[Future[bytes]] = deque()
        feed = iter(items)
        for item in feed:
            pending.append(pool.submit(fetch, item))
            if len(pending) >= depth:
                break
        while pending:
            data = pending.popleft().result()
            nxt = next(feed, None)
            if nxt is not None:
                pending.append(pool.submit(fetch, nxt))
            yield data


def merge_extents(extents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(extents):
        if out and off <= out[-1][0] + out[-1][1]:
            start, length = out[-1]
            out[-1] = (start, max(length, off + n - start))
        else:
            out.append((off, n))
    return out


def replica_mac(mac: str, replica_name: str) -> str:
    """A stable, locally administered MAC for a replica NIC that must not keep the original's."""
    h = hashlib.blake2b(f"{replica_name}/{mac}".encode(), digest_size=5).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h)


def replica_config(inp: EnsureReplicaInput) -> VMConfig:
    spec, src = inp.spec, inp.source_config
    table = {m.source: m.target for m in spec.network_mapping}
    ips = {m.source_ip: m.target_ip for m in spec.ip_mapping}
    nics = [NIC(name=n.name, network=table.get(n.network, n.network),
                mac=n.mac if spec.keep_mac else replica_mac(n.mac, inp.replica.vm),
                ip=ips.get(n.ip or "", n.ip)) for n in src.nics]
    disks = [d.model_copy(update={"thin": spec.thin_provisioning}) for d in src.disks]
    return src.model_copy(update={"name": inp.replica.vm, "nics": nics, "disks": disks,
                                  "description": f"abdr replica of {spec.source_cluster}/{src.name} (plan {spec.name})"})


class ReplicationActivities(ReplicationApi):
    def __init__(self, res: Resources, token: str, ca: str | None = None) -> None:
        self.res = res
        self.token = token
        self.ca = ca

    @activity.defn(name="ensure_replica")
    @translate_errors
    def ensure_replica(self, inp: EnsureReplicaInput) -> str:
        """The replica VM (created powered off on first use). Disks the source gained are added."""
        driver = self.res.driver(inp.replica.cluster)
        wanted = replica_config(inp)
        found = driver.find_vm(inp.replica.vm)
        if found is None:
            return driver.create_vm(wanted).id
        if found.id != inp.known_vm_id and not found.config.description.startswith("abdr replica of"):
            raise InvalidRequest(f"VM {inp.replica} exists and is not an abdr replica: choose another naming rule")
        if {d.name: (d.size_bytes, d.thin) for d in found.config.disks} != {d.name: (d.size_bytes, d.thin) for d in wanted.disks}:
            driver.update_vm_config(found.id, wanted)
        return found.id

    @activity.defn(name="pull_extents")
    @translate_errors
    @holds_slot(lambda inp: SlotRequest(inp.kind, inp.local.cluster))
    def pull_extents(self, inp: PullInput) -> PullResult:
        site = self.res.catalog.get_site(inp.remote_site)
        if not site.transport_url:
            raise InvalidRequest(f"site {inp.remote_site!r} announces no transport address (is its worker running?)")
        client = TransportClient(site.transport_url, self.token, ca=self.ca, bandwidth_mbps=inp.bandwidth_mbps)
        local = self.res.driver(inp.local.cluster)
        config = local.get_vm(inp.local.vm_id).config
        resumed = resume_details(PullProgress) or PullProgress()
        moved = resumed.moved_bytes
        disk_bytes = extents_count = 0
        try:
            for di, disk in enumerate(config.disks):
                disk_bytes += disk.size_bytes
                reply = client.extents(ExtentsRequest(cluster=inp.remote.cluster, vm_id=inp.remote.vm_id, disk=disk.name,
                                                      snapshot_id=inp.remote.snapshot_id or "",
                                                      base_snapshot_id=inp.remote_base))
                wanted = list(reply.extents)
                if inp.local_base:
                    wanted += [(e.offset, e.length) for e in
                               local.changed_extents(inp.local.vm_id, disk.name, inp.local_base, None)]
                wanted = [(o, min(n, reply.size - o)) for o, n in merge_extents(wanted) if o < reply.size]
                extents_count += len(wanted)
                if di < resumed.disk_index:
                    continue
                todo = [(bi, b) for bi, b in enumerate(batches(wanted))
                        if not (di == resumed.disk_index and bi < resumed.batch_index)]  # confirmed before

                def fetch(batch: list[tuple[int, int]], disk_name: str = disk.name) -> bytes:
                    return client.read(ReadRequest(cluster=inp.remote.cluster, vm_id=inp.remote.vm_id,
                                                   disk=disk_name, snapshot_id=inp.remote.snapshot_id, extents=batch,
                                                   compress=inp.compression))

                with local.open_disk(inp.local.vm_id, disk.name, writable=True) as handle:
                    # Reported progress covers only flushed writes: a retry resumes there exactly.
                    checkpoint = Checkpoint(handle.flush)
                    # The next batches are fetched while this one is written (network and disk overlap);
                    # writes stay in order, so "batch_index" always means "everything before is written".
                    for (bi, batch), data in zip(todo, prefetch(fetch, [b for _, b in todo], PREFETCH)):
                        writes, pos, view = [], 0, memoryview(data)
                        for off, n in batch:
                            writes.append((off, view[pos:pos + n]))
                            pos += n
                        handle.write_many(writes)
                        moved += pos
                        checkpoint(PullProgress(disk_index=di, batch_index=bi + 1, moved_bytes=moved))
                    checkpoint(PullProgress(disk_index=di + 1, batch_index=0, moved_bytes=moved), force=True)
        finally:
            client.close()
        activity.metric_meter().create_counter(
            "abdr_replication_moved_bytes", "bytes pulled from another site into local VMs", "By").add(moved)
        return PullResult(moved_bytes=moved, wire_bytes=client.wire_bytes, disk_bytes=disk_bytes, extents=extents_count)

    @activity.defn(name="drop_snapshot")
    @translate_errors
    def drop_snapshot(self, inp: SnapshotDrop) -> None:
        try:
            self.res.driver(inp.at.cluster).delete_snapshot(inp.at.vm_id, inp.at.snapshot_id or "")
        except NotFound:
            pass

    @activity.defn(name="rollback_vm")
    @translate_errors
    def rollback_vm(self, at: VMAt) -> None:
        self.res.driver(at.cluster).rollback(at.vm_id, at.snapshot_id or "")

    @activity.defn(name="power_state")
    @translate_errors
    def power_state(self, at: VMAt) -> PowerStateReply:
        """The VM's power state; a cluster whose manager does not answer is not reachable,
        said by the site itself (with why), rather than left to the probe's timeout."""
        patience = ANSWER_WITHIN.set(PROBE_PATIENCE_S)
        try:
            return PowerStateReply(state=self.res.driver(at.cluster).get_vm(at.vm_id).power_state)
        except ClusterUnreachable as e:
            return PowerStateReply(state="UNKNOWN", reachable=False, detail=str(e))
        finally:
            ANSWER_WITHIN.reset(patience)

    @activity.defn(name="shutdown_vm")
    @translate_errors
    def shutdown_vm(self, inp: ShutdownInput) -> PowerStateReply:
        """Fence a VM: graceful shutdown, forced power-off, or graceful then forced."""
        driver, vm_id = self.res.driver(inp.at.cluster), inp.at.vm_id
        was = driver.get_vm(vm_id).power_state
        if was == PowerState.STOPPED or inp.mode == ShutdownMode.NONE:
            return PowerStateReply(state=was)
        ran = was == PowerState.RUNNING  # the caller restarts what this call stopped, if it must undo
        if inp.mode == ShutdownMode.POWEROFF:
            return PowerStateReply(state=driver.power_off(vm_id).power_state, stopped=ran)
        try:
            return PowerStateReply(state=driver.shutdown(vm_id, inp.timeout_s).power_state, stopped=ran)
        except OperationTimeout as e:
            if inp.mode == ShutdownMode.SHUTDOWN_WITH_POWEROFF:
                return PowerStateReply(state=driver.power_off(vm_id).power_state, stopped=ran)
            # The guest had its timeout; retrying the same request would only delay the answer.
            raise ApplicationError(str(e), type="SourceNotStopped", non_retryable=True) from e

    @activity.defn(name="clone_vm_at")
    @translate_errors
    def clone_vm_at(self, inp: CloneInput) -> str:
        """A copy of a VM at a snapshot with every NIC on an isolated network (failover test).
        A half-made copy left by an earlier attempt is replaced."""
        driver, src = self.res.driver(inp.source.cluster), inp.source
        snap = driver.get_snapshot(src.vm_id, src.snapshot_id or "")
        existing = driver.find_vm(inp.name)
        if existing is not None:
            if not existing.config.description.startswith("abdr test copy"):
                raise InvalidRequest(f"VM {inp.name!r} exists and is not an abdr test copy")
            self.delete_vm(VMAt(cluster=inp.source.cluster, vm_id=existing.id))
        nics = [n.model_copy(update={"network": inp.network}) for n in snap.config.nics]
        config = snap.config.model_copy(update={"name": inp.name, "nics": nics,
                                                "description": f"abdr test copy of {src.vm_id}@{snap.id}"})
        if isinstance(driver, ClonesFromSnapshot):  # the cluster copies (copy-on-write on ACOS)
            return driver.clone_from_snapshot(src.vm_id, snap.id, config).id
        copy = driver.create_vm(config)
        for disk in config.disks:
            with driver.open_disk(src.vm_id, disk.name, snap.id) as s, \
                    driver.open_disk(copy.id, disk.name, writable=True) as d:
                for e in driver.allocated_extents(src.vm_id, disk.name, snap.id):
                    for off in range(e.offset, e.end, 8 << 20):
                        d.write(off, s.read(off, min(8 << 20, e.end - off)))
                d.flush()
        return copy.id

    @activity.defn(name="delete_vm")
    @translate_errors
    def delete_vm(self, at: VMAt) -> None:
        driver = self.res.driver(at.cluster)
        try:
            if driver.get_vm(at.vm_id).power_state != PowerState.STOPPED:
                driver.power_off(at.vm_id)
            driver.delete_vm(at.vm_id)
        except NotFound:
            pass

    @activity.defn(name="guest_signs")
    @translate_errors
    def guest_signs(self, at: VMAt) -> GuestSigns:
        """What the running guest itself showed (console output, agent ping): a drill's evidence."""
        signs = self.res.driver(at.cluster).guest_signs(at.vm_id)
        if signs.console_tail is not None:  # each poll is a history event: keep it small
            signs = signs.model_copy(update={"console_tail": signs.console_tail[-CONSOLE_TAIL:]})
        return signs

    @activity.defn(name="disk_digest")
    @translate_errors
    def disk_digest(self, at: VMAt) -> dict[str, str]:
        """BLAKE2b of every disk of a VM (at a snapshot): evidence of what a drill booted."""
        driver = self.res.driver(at.cluster)
        out = {}
        for disk in driver.get_vm(at.vm_id).config.disks:
            h = hashlib.blake2b(digest_size=32)
            with driver.open_disk(at.vm_id, disk.name, at.snapshot_id) as d:
                for off in range(0, d.size, 8 << 20):
                    h.update(d.read(off, min(8 << 20, d.size - off)))
            out[disk.name] = h.hexdigest()
        return out

    @activity.defn(name="replica_retention")
    @translate_errors
    def replica_retention(self, inp: ReplicaRetentionInput) -> ExpiredPoints:
        """Expire replica points by the plan's retention: catalog DELETING -> snapshot gone ->
        row gone. The point that is the replication base is never expired."""
        catalog = self.res.catalog
        spec = catalog.get_replication_plan(inp.plan)
        points = [p for p in catalog.list_restore_points(plan=inp.plan, vm=inp.replica)]
        keep = {p.id for p in points if p.id == inp.keep_snapshot}
        expired = [pid for pid in expired_points(points, spec.retention, datetime.now(timezone.utc)) if pid not in keep]
        driver = self.res.driver(inp.replica.cluster)
        for pid in expired:
            snap = catalog.point_snapshot(pid)
            catalog.set_point_state(pid, PointState.DELETING)
            if snap:
                try:
                    driver.delete_snapshot(inp.replica_vm_id, snap)
                except NotFound:
                    pass
            catalog.delete_restore_point(pid)
        return ExpiredPoints.of(expired)

    @activity.defn(name="check_sources_unchanged")
    @translate_errors
    def check_sources_unchanged(self, inp: ReplicaCheckInput) -> ReplicaCheckResult:
        """A page's VMs whose source has not changed since its replica's base (activities/replica_carry.py)."""
        return replica_carry.check_sources(self, inp)

    @activity.defn(name="carry_replicas")
    @translate_errors
    def carry_replicas(self, inp: ReplicaCarryInput) -> ReplicaCarryResult:
        """A page's unchanged VMs given their replica points here, as their children would."""
        return replica_carry.carry_replicas(self, inp)
