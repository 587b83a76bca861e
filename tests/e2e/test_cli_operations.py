"""Operations a user runs from the CLI against the real stack: starting and stopping a VM
(graceful within a timeout, or forced), cancelling a running job (its backup cleans up), a
replica's points newest first (what `failover --restore-point` takes), tables that keep
IDs whole when the output is piped, the services' limits, and raw exports of disks."""

from __future__ import annotations

import json

from drivers.local.tools import rewrite_fraction
from models.ids import vm_backup_id
from models.jobs import TransferProgress
from models.services import BackupService
from tests.e2e.conftest import MiB, Stack
from tests.e2e.observe import wait_heartbeat
from tests.e2e.oracle import assert_image, capture
from tests.e2e.test_backup_restore import plan_spec
from tests.e2e.test_plans import repo_point_ids
from tests.quiet import quiet_time


async def test_vm_start_stop_and_forced_stop(stack: Stack) -> None:
    vm_id = stack.make_vm("web", size=1 * MiB)
    started = await stack.cli_json("vm", "start", "c1", "web")
    assert (started["id"], started["power_state"]) == (vm_id, "RUNNING")
    assert stack.driver.get_vm(vm_id).power_state == "RUNNING"
    assert (await stack.cli_json("vm", "start", "c1", "web"))["power_state"] == "RUNNING"  # no change
    assert "VM c1/web (" in await stack.cli("vm", "stop", "c1", "web")
    assert stack.driver.get_vm(vm_id).power_state == "STOPPED"

    # A guest that ignores the shutdown: the stop says so (unavailable, exit 6) and the VM runs on.
    await stack.cli("vm", "start", "c1", "web")
    stack.driver.set_guest_behavior(vm_id, refuse_shutdown=True)
    code, out = await stack.run_cli("vm", "stop", "c1", "web", "--timeout", "1")
    assert code == 6 and len(out.splitlines()) == 1, out
    assert "did not shut down within 1s" in out and "`abdr vm stop --force` powers it off" in out, out
    assert stack.driver.get_vm(vm_id).power_state == "RUNNING"
    assert (await stack.cli_json("vm", "stop", "c1", "web", "--force"))["power_state"] == "STOPPED"
    assert stack.driver.get_vm(vm_id).power_state == "STOPPED"

    code, out = await stack.run_cli("vm", "start", "c1", "ghost")
    assert code == 3 and "VM 'ghost' not found on cluster 'c1'" in out, out
    code, out = await stack.run_cli("vm", "stop", "nowhere", "web")
    assert code == 3 and "cluster 'nowhere' not found" in out, out
    code, out = await stack.run_cli("vm", "stop", "c1", "web", "--timeout", "999")
    assert code == 2, out


async def test_job_cancel_stops_the_backup_and_cleans_up(stack: Stack) -> None:
    vm_id = stack.make_vm("big", size=16 * MiB)
    source = capture(stack.driver, "big")
    stack.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=2))
    await stack.client.create_backup_plan(plan_spec("slow", ["big"]))
    job = (await stack.cli_json("backup-plan", "run", "slow"))["workflow_id"]
    await wait_heartbeat(stack.client.client, vm_backup_id("slow", "c1", "big"), "transfer_backup",
                         TransferProgress, "bytes_done", 1)
    ended = await stack.cli_json("job", "cancel", job, "--wait")
    assert (ended["workflow_id"], ended["status"]) == (job, "CANCELLED"), ended
    [row] = [j for j in await stack.cli_json("job", "list", "--plan", "slow") if j["workflow_id"] == job]
    assert row["status"] == "CANCELLED", row
    [vm] = row["result"]["vms"]
    assert vm["cancelled"] and vm["error"] == "stopped: the run was cancelled", vm
    assert await stack.client.list_restore_points(plan="slow") == []
    assert repo_point_ids(stack) == set()
    assert stack.driver.list_snapshots(vm_id) == []  # the backup's snapshot was deleted
    assert list((stack.repo_path / "staging").iterdir()) == []  # and its partial files
    assert_image(stack.driver, "big", source, "source after the cancelled backup")
    shown = await stack.cli_json("job", "show", job)
    assert shown["status"] == ended["status"], shown

    code, out = await stack.run_cli("job", "cancel", job)
    assert code == 4 and f"job {job!r} is not running" in out, out
    code, out = await stack.run_cli("job", "cancel", "backup-plan/nope")
    assert code == 3 and "job 'backup-plan/nope' not found" in out, out


async def test_replica_points_newest_first_and_failover_to_one(stack: Stack, transport: None) -> None:
    stack.make_vm("web", size=2 * MiB)
    await stack.client.add_cluster("c2", "default", "local", str(stack.tmp / "clusters" / "c2"))
    await stack.cli("replication-plan", "create", "dr", "--vm", "c1/web", "--source-site", "default",
                    "--target-site", "default", "--target-cluster", "c2", "--schedule", f"daily {quiet_time()}",
                    "--retention", "count:5")
    for _ in range(3):
        await stack.cli("replication-plan", "run", "dr", "--wait")
    listed = [p["id"] for p in await stack.cli_json("restore-point", "list", "--plan", "dr")]  # oldest first
    points = await stack.cli_json("replica", "points", "dr", "web")
    assert [p["id"] for p in points] == listed[::-1] and len(listed) == 3, (points, listed)
    [replica] = await stack.cli_json("replica", "list", "--plan", "dr")
    assert {(p["cluster"], p["vm"]) for p in points} == {(replica["replica"]["cluster"], replica["replica"]["vm"])}
    assert points[0]["id"] == replica["replica_point"]  # the newest first

    # Piped into a narrow "terminal": the table keeps every ID whole, on one line.
    out = await stack.cli("replica", "points", "dr", "web", columns=40)
    for pid in listed:
        assert any(pid in line for line in out.splitlines()), (pid, out)
    assert "…" not in out

    # Never two running copies: the replica stays off until failed over to...
    copy = replica["replica"]["vm"]
    code, out = await stack.run_cli("vm", "start", "c2", copy)
    assert code == 4 and "is the replica of c1/web in plan dr (READY): it runs only after a failover" in out, out
    oldest = listed[0]
    done = json.loads(await stack.cli("failover", "dr", "web", "--restore-point", oldest, "--source-shutdown",
                                      "poweroff", "--no-power-on", "--wait", "--json"))
    assert done["point_id"] == oldest, done
    # ... and then the original stays off while its replica is the VM.
    code, out = await stack.run_cli("vm", "start", "c1", "web")
    assert code == 4 and f"failed over to c2/{copy} in plan dr (FAILOVER): starting it would run two" in out, out
    assert (await stack.cli_json("vm", "start", "c2", copy))["power_state"] == "RUNNING"

    code, out = await stack.run_cli("replica", "points", "dr", "ghost")
    assert code == 3 and "VM 'ghost' is not protected by replication plan 'dr'" in out, out


async def test_service_show_and_set_change_only_what_they_name(stack: Stack) -> None:
    shown = await stack.cli_json("service", "show")
    [backup] = shown["backup"]
    [replication] = shown["replication"]
    assert backup["site"] == replication["site"] == "default"
    assert (backup["max_parallel_backups"], backup["backup_read_iops"]) == (4, None)  # the defaults

    await stack.cli("service", "set", "backup", "default", "--site", "default", "--max-parallel-backups", "1",
                    "--backup-read-iops", "50")
    svc = await stack.cli_json("service", "set", "backup", "default", "--max-retries", "5")
    assert (svc["max_parallel_backups"], svc["backup_read_iops"], svc["max_retries"]) == (1, 50, 5), svc
    # What a backup plan's runs use (its backup service is "default") is what was set.
    used = stack.catalog.backup_service("default", "default")
    assert (used.max_parallel_backups, used.backup_read_iops, used.max_retries) == (1, 50, 5)
    svc = await stack.cli_json("service", "set", "backup", "default", "--backup-read-iops", "none")
    assert (svc["backup_read_iops"], svc["max_parallel_backups"]) == (None, 1), svc

    await stack.cli("service", "set", "replication", "default", "--site", "default",
                    "--replication-bandwidth-mbps", "40", "--max-replication-jobs", "2")
    rep = stack.catalog.site_replication_service("default")
    assert (rep.replication_bandwidth_mbps, rep.max_replication_jobs) == (40, 2)
    shown = await stack.cli_json("service", "show", "--site", "default")
    assert [(s["name"], s["replication_bandwidth_mbps"]) for s in shown["replication"]] == [("default", 40)]

    for argv, words in [
        (("backup", "default", "--replication-bandwidth-mbps", "5"), "a backup service has no "
                                                                    "--replication-bandwidth-mbps"),
        (("backup", "default", "--max-parallel-backups", "0"), "max_parallel_backups"),
        (("backup", "default", "--max-retries", "none"), "--max-retries takes a number"),
        (("backup", "fresh"), "backup service 'fresh' is not configured yet: give its --site"),
    ]:
        code, out = await stack.run_cli("service", "set", *argv)
        assert code == 2 and words in out, (argv, out)
    code, out = await stack.run_cli("service", "set", "backup", "x", "--site", "nowhere")
    assert code == 3 and "site 'nowhere' not found" in out, out


async def test_vm_export_of_a_point_and_of_a_stopped_disk(stack: Stack) -> None:
    vm_id = stack.make_vm("web", disks=2, size=4 * MiB)
    stack.make_vm("other", size=1 * MiB)
    at_backup = stack.disk_bytes("web", "disk1")
    await stack.client.create_backup_plan(plan_spec("gold", ["web", "other"]))
    await stack.cli("backup-plan", "run", "gold", "--wait")
    points = {p["vm"]: p["id"] for p in await stack.cli_json("restore-point", "list", "--plan", "gold")}
    rewrite_fraction(stack.driver, vm_id, "disk1", 0.3, seed=7)
    now = stack.disk_bytes("web", "disk1")
    assert now != at_backup

    out = await stack.cli_json("vm", "export", "c1", "web", "disk1", str(stack.tmp / "point.raw"),
                               "--point", points["web"])
    assert (stack.tmp / "point.raw").read_bytes() == at_backup
    assert out["size_bytes"] == 4 * MiB and 0 < out["written_bytes"] < 4 * MiB, out  # holes stay holes
    await stack.cli("vm", "export", "c1", "web", "disk1", str(stack.tmp / "now.raw"))
    assert (stack.tmp / "now.raw").read_bytes() == now

    await stack.cli("vm", "start", "c1", "web")
    refusals = [
        (("web", "disk1", str(stack.tmp / "running.raw")), 4, "is RUNNING: stop it first"),
        (("web", "disk1", str(stack.tmp / "point.raw"), "--point", points["web"]), 2, "exists already"),
        (("web", "disk1", str(stack.tmp / "x.raw"), "--point", points["other"]), 2,
         f"restore point {points['other']!r} is of c1/other, not c1/web"),
        (("web", "disk9", str(stack.tmp / "x.raw"), "--point", points["web"]), 2, "has no disk 'disk9'"),
        (("web", "disk1", "relative.raw"), 2, "must be an absolute path"),
    ]
    for argv, code_wanted, words in refusals:
        code, text = await stack.run_cli("vm", "export", "c1", *argv)
        assert code == code_wanted and words in text and len(text.splitlines()) == 1, (argv, text)
    assert sorted(p.name for p in stack.tmp.glob("*.raw")) == ["now.raw", "point.raw"]  # no partial file left
    assert not list(stack.tmp.glob(".*.partial"))


async def test_job_cancel_refuses_a_job_that_would_stop_half_done(stack: Stack) -> None:
    stack.make_vm("web", size=4 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    await stack.cli("backup-plan", "run", "gold", "--wait")
    [point] = await stack.cli_json("restore-point", "list", "--plan", "gold")
    stack.catalog.put_service(BackupService(name="default", site="default", restore_write_iops=2))
    job = (await stack.cli_json("restore", point["id"], "--mode", "rebuild", "--new-name", "copy"))["workflow_id"]
    code, out = await stack.run_cli("job", "cancel", job)
    assert code == 2 and f"job {job!r} is a Restore, which does not clean up after a cancel" in out, out
    assert (await stack.cli_json("job", "show", job))["status"] == "RUNNING"
