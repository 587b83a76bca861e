"""Request examples of the REST API's OpenAPI document. Each one validates against its
model (tests/e2e/test_api_openapi.py checks it), so a client copying one sends a request the
API accepts."""

from __future__ import annotations

from typing import Any

_SCHEDULE = {"kind": "DAILY", "times": ["01:00"], "time_zone": "UTC"}


def _ex(summary: str, value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"default": {"summary": summary, "value": value}}


BACKUP_PLAN = _ex("A nightly backup of one VM, keeping 7 points", {
    "name": "gold", "vms": [{"cluster": "c1", "vm": "web"}], "repository": "r1", "schedule": _SCHEDULE,
    "retention": {"kind": "COUNT", "value": 7}})
REPLICATION_PLAN = _ex("Replicate one VM to the dr site every 15 minutes", {
    "name": "dr", "kind": "CROSS_SITE", "source_site": "default", "source_cluster": "c1", "target_site": "dr",
    "target_cluster": "c2", "vms": [{"cluster": "c1", "vm": "web"}],
    "schedule": {"kind": "MINUTELY", "interval": 15}, "retention": {"kind": "COUNT", "value": 4}})
RESTORE = _ex("Rebuild a VM from a restore point under a new name", {
    "point_id": "gold-web-20260101T010000Z", "mode": "REBUILD", "new_name": "web-restored"})
FAILOVER = _ex("Fail over to the newest replica point", {"plan": "dr", "vm": "web", "point": "latest"})
UNDO_FAILOVER = _ex("Undo a failover", {"plan": "dr", "vm": "web"})
FAILOVER_TEST = _ex("Test a failover for an hour on the isolated network", {
    "plan": "dr", "vm": "web", "cleanup_after_s": 3600})
FAILBACK = _ex("Fail back to the source site", {"plan": "dr", "vm": "web"})
PERMANENT_FAILOVER = _ex("Make the replica the production VM for good", {"plan": "dr", "vm": "web"})
# Paths on a site worker's host: under /srv/abdr, which the API's tests move to a directory of
# their own before they send an example.
EXAMPLE_ROOT = "/srv/abdr"
SITE = _ex("A second site, with its own abdr worker", {"name": "dr", "description": "the disaster-recovery site"})
CLUSTER = _ex("A local cluster on site dr", {"name": "c2", "site": "dr", "driver": "local",
                                              "endpoint": f"{EXAMPLE_ROOT}/clusters/c2"})
EXPORT = _ex("Disk disk0 of a restore point as a raw file", {
    "disk": "disk0", "path": f"{EXAMPLE_ROOT}/exports/web-disk0.raw", "point": "gold-web-20260101T010000Z"})
REPOSITORY = _ex("A repository on site default", {"name": "r2", "path": f"{EXAMPLE_ROOT}/repositories/r2",
                                                   "site": "default"})
KEY = _ex("The key of an encrypted repository", {"key_file": f"{EXAMPLE_ROOT}/keys/r2.key"})
BACKUP_SERVICE = _ex("Two backups at once on site default, each reading at most 2000 IOPS", {
    "name": "default", "site": "default", "max_parallel_backups": 2, "backup_read_iops": 2000})
REPLICATION_SERVICE = _ex("Replication capped at 200 Mbit/s", {
    "name": "default", "site": "default", "replication_bandwidth_mbps": 200})
