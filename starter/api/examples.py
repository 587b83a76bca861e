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
