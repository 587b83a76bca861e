"""The activity interface (models/activity_api.py) and the workers agree: every interface
method is registered, on the worker of its queue, under its name and with its signature;
every registered activity but the `admin_*` ones (run by name from the closed list
`models.admin.ADMIN_OPS`) has an interface method; the workers register exactly the
activities they did before the interface existed; no workflow names an activity by string;
and every activity result in the recorded histories decodes as its interface says (results
are typed now: a result shape that changed must still read the old one)."""

from __future__ import annotations

import ast
import base64
import inspect
import json
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

import worker
from activities.registry import DEFINITION, activities_of
from drivers.catalog.store import Catalog
from models.activity_api import CATALOG_APIS, SITE_APIS, HealthApi
from models.health import HealthCheckInput, SiteWorkerInfo
from starter.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = sorted((ROOT / "tests/replay/histories").glob("*.json"))

# What the workers registered before models/activity_api.py and activities/registry.py
# (worker.py's hand lists and the `.all()` methods): the registry must not change it.
SITE_ACTIVITIES = {
    "admin_add_repository_key", "admin_check_vms", "admin_create_repository", "admin_delete_restore_points",
    "abandon_backup", "admin_list_vms", "admin_repository_findings", "apply_config", "apply_retention", "cleanup_backup",
    "clone_vm_at", "create_snapshot", "create_vm_for_restore", "delete_vm", "disk_digest", "drop_snapshot",
    "ensure_replica", "find_vm", "maintain_repository", "power_state", "prepare_backup", "pull_extents",
    "release_snapshot", "replica_retention", "restore_disks", "rollback_vm", "set_power", "shutdown_vm",
    "site_worker_info", "transfer_backup",
    "guest_signs",  # added with the libvirt driver: a drill's evidence from the guest itself
    "cluster_health",  # added since, through the interface (the health check's cluster probe)
    "admin_start_vm", "admin_stop_vm",  # added since: `abdr vm start|stop` (Admin operations, by name)
    "admin_export_disk",  # added since: `abdr vm export` (an Admin operation, by name)
    "finish_backup",  # added since: a backup's record + release + retention in one call (issue 13)
    "carry_unchanged",  # added since: a page's unchanged VMs' points in one call per site (issue 13)
    "check_sources_unchanged",  # added since: a replication page's no-change check on the source site (issue 13)
    "carry_replicas",  # added since: that page's unchanged VMs' replica points in one call (issue 13)
}
CATALOG_ACTIVITIES = {
    "admin_add_backup_plan", "admin_add_cluster", "admin_add_replication_plan", "admin_add_site",
    "admin_delete_backup_plan", "admin_delete_replication_plan", "admin_get_backup_plan",
    "admin_get_replica", "admin_get_replication_plan", "admin_get_restore_point", "admin_list_backup_plans",
    "admin_list_clusters",
    "admin_list_jobs", "admin_list_replicas", "admin_list_replication_plans", "admin_list_repositories",
    "admin_list_restore_points", "admin_list_sites", "admin_put_backup_service", "admin_replica_history",
    "admin_set_backup_plan_status", "admin_set_replication_plan_status", "admin_update_backup_plan",
    "admin_update_replication_plan", "change_replica", "create_reverse_plan", "exclude_from_plan",
    "find_replica_point", "get_replica", "get_repository", "record_job", "record_point", "record_replica_point",
    "release_batch_claims",
    "replica_history", "resolve_plan", "resolve_replication_plan", "resolve_restore", "set_plan_result",
    "set_replication_plan_result",
    "admin_list_replica_points",  # added since: `abdr replica points` (an Admin operation, by name)
    "admin_list_services", "admin_put_replication_service",  # added since: `abdr service show|set`
    "record_run_vms", "admin_list_run_vms",  # added since: plan runs in pages, VM results in the catalog
}


def definition(fn: Callable[..., Any]) -> activity._Definition:
    return activity._Definition.must_from_callable(fn)


def by_name(fns: list[Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    out: dict[str, Callable[..., Any]] = {}
    for fn in fns:
        name = definition(fn).name
        assert name and name not in out, f"activity {name!r} registered twice"
        out[name] = fn
    return out


@pytest.fixture(scope="module")
def registered() -> Iterator[tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]]]]:
    """(site worker's activities, catalog worker's activities), as worker.py builds them."""
    catalog = Catalog("sqlite://")
    try:
        yield (by_name(worker.site_activities(catalog, "default", Settings(transport_token="t" * 32))),
               by_name(worker.catalog_activities(catalog, None)))  # type: ignore[arg-type]
    finally:
        catalog.close()


def stubs(apis: list[type]) -> dict[str, tuple[type, Callable[..., Any]]]:
    """activity name -> (interface, method)"""
    return {definition(fn).name or "": (api, fn) for api in apis for fn in vars(api).values()
            if hasattr(fn, DEFINITION)}


def test_the_workers_register_what_they_did(registered: tuple[dict, dict]) -> None:
    site, cat = registered
    assert set(site) == SITE_ACTIVITIES
    assert set(cat) == CATALOG_ACTIVITIES


@pytest.mark.parametrize("apis, worker_index", [(SITE_APIS, 0), (CATALOG_APIS, 1)], ids=["site", "catalog"])
def test_every_interface_method_is_registered_with_its_signature(
        registered: tuple[dict, dict], apis: list[type], worker_index: int) -> None:
    served = registered[worker_index]
    for name, (api, stub) in stubs(apis).items():
        assert name in served, f"{name!r} of models/activity_api.py is not registered on that queue's worker"
        impl = served[name]
        assert isinstance(impl.__self__, api), f"{type(impl.__self__).__name__} must subclass {api.__name__}"
        assert typing.get_type_hints(impl) == typing.get_type_hints(stub), name
        assert list(inspect.signature(impl).parameters) == list(inspect.signature(stub).parameters)[1:], name
        got, want = definition(impl), definition(stub)  # what the SDK decodes arguments and results with
        assert (got.arg_types, got.ret_type, got.is_async) == (want.arg_types, want.ret_type, want.is_async), name
        assert want.arg_types and all(want.arg_types), f"{name}: unresolved annotations"


def test_every_registered_activity_has_an_interface_method_but_admin(registered: tuple[dict, dict]) -> None:
    declared = set(stubs(SITE_APIS + CATALOG_APIS))
    for served in registered:
        missing = {n for n in served if not n.startswith("admin_")} - declared
        assert not missing, f"registered without an interface method in models/activity_api.py: {sorted(missing)}"


# -- no activity by string in workflows/ ------------------------------------------------------

SDK_CALLS = {"execute_activity", "start_activity", "execute_activity_method", "start_activity_method",
             "execute_local_activity", "start_local_activity"}
# workflows/' own helpers and the position of their activity argument
HELPERS = {"catalog": 0, "call": 1, "site": 0}


def named_by_string(tree: ast.AST) -> list[int]:
    """Lines of calls that name an activity by a string (constant or f-string)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        index = 0 if fname in SDK_CALLS else HELPERS.get(fname)
        if index is None or len(node.args) <= index:
            continue
        arg = node.args[index]
        if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            lines.append(node.lineno)
    return lines


def test_the_scan_sees_string_calls() -> None:
    src = ('workflow.execute_activity("find_vm", vm)\nworkflow.start_activity(f"admin_{op}", p)\n'
           'catalog("get_replica", ref)\nsites.call(site, "power_state", at)\nsite("find_vm", vm)\n'
           'workflow.execute_activity_method(BackupApi.find_vm, vm)\ncatalog(CatalogApi.record_job, job)\n')
    assert named_by_string(ast.parse(src)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.py")), ids=lambda p: p.name)
def test_no_workflow_names_an_activity_by_string(path: Path) -> None:
    # admin.py's dispatch of the closed list, `admin_<operation>`, builds its name once, outside the calls.
    lines = named_by_string(ast.parse(path.read_text(), str(path)))
    assert not lines, f"{path.name} names activities by string at lines {lines}: call the interface method"


# -- the registry ------------------------------------------------------------------------------

def test_an_interface_method_left_unimplemented_is_refused() -> None:
    class Forgetful(HealthApi):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Forgetful()  # type: ignore[abstract]
    Forgetful.__abstractmethods__ = frozenset()  # past the ABC, the registry still refuses it
    with pytest.raises(TypeError, match="does not implement activity 'site_worker_info'"):
        activities_of(Forgetful())  # type: ignore[abstract]


def test_an_override_without_its_activity_definition_is_refused() -> None:
    class Undecorated(HealthApi):
        def site_worker_info(self, req: HealthCheckInput) -> SiteWorkerInfo:
            raise AssertionError

    with pytest.raises(TypeError, match="registered as None"):
        activities_of(Undecorated())


def test_an_override_under_another_name_is_refused() -> None:
    class Renamed(HealthApi):
        @activity.defn(name="site_worker_info_v2")
        def site_worker_info(self, req: HealthCheckInput) -> SiteWorkerInfo:
            raise AssertionError

    with pytest.raises(TypeError, match="registered as 'site_worker_info_v2'"):
        activities_of(Renamed())


def test_the_registry_lists_bound_activities_only() -> None:
    class Health(HealthApi):
        @activity.defn(name="site_worker_info")
        def site_worker_info(self, req: HealthCheckInput) -> SiteWorkerInfo:
            raise AssertionError

        @activity.defn(name="extra")
        def extra(self, req: HealthCheckInput) -> None: ...

        def helper(self) -> None: ...

    impl = Health()
    assert activities_of(impl) == [impl.extra, impl.site_worker_info]


# -- recorded results -------------------------------------------------------------------------

def _payload(p: dict[str, Any]) -> Payload:
    return Payload(metadata={k: base64.b64decode(v) for k, v in p["metadata"].items()},
                   data=base64.b64decode(p.get("data", "")))


def recorded_results(path: Path) -> Iterator[tuple[str, Payload]]:
    """(activity type, result payload) of every completed activity in a recorded history:
    normal ones, and local ones (a marker whose data names the activity, the catalog's calls)."""
    scheduled: dict[str, str] = {}
    for event in json.loads(path.read_text())["events"]:
        if attrs := event.get("activityTaskScheduledEventAttributes"):
            scheduled[event["eventId"]] = attrs["activityType"]["name"]
        if attrs := event.get("activityTaskCompletedEventAttributes"):
            for p in (attrs.get("result") or {}).get("payloads", []):
                yield scheduled[attrs["scheduledEventId"]], _payload(p)
        marker = event.get("markerRecordedEventAttributes") or {}
        if marker.get("markerName") == "core_local_activity" and "result" in marker["details"]:
            [meta] = marker["details"]["data"]["payloads"]
            name = json.loads(base64.b64decode(meta["data"]))["activity_type"]
            for p in marker["details"]["result"].get("payloads", []):
                yield name, _payload(p)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_results_decode_as_the_interface_says(path: Path) -> None:
    returns: dict[str, Any] = {name: definition(fn).ret_type for name, (_, fn) in stubs(SITE_APIS + CATALOG_APIS).items()}
    converter = pydantic_data_converter.payload_converter
    for name, payload in recorded_results(path):
        if name in returns:
            converter.from_payloads([payload], [returns[name]])  # raises if a workflow could not read it
