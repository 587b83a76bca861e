"""The admin plane is typed end to end: every operation of models/admin.py's closed list
declares a response model, its activity returns exactly that type, the answer survives the
data converter as that model (what the client reads), its JSON keeps the shape the REST API
answered before the models, and every REST route documents what it answers."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.admin import AdminActivities
from activities.site_admin import SiteAdminActivities
from drivers.catalog.store import Catalog
from models.admin import ADMIN_OPS, BackupPlanView, ByName, NoArgs, PointFilter
from models.inventory import Cluster, Site
from models.plans import BackupPlanSpec
from models.services import RepositorySpec
from starter.api.main import make_api
from starter.runtime.settings import Settings


def activity_methods() -> dict[str, Any]:
    """Every admin_* activity of the two admin classes, by its operation."""
    found = {}
    for cls in (AdminActivities, SiteAdminActivities):
        for fn in vars(cls).values():
            defn = getattr(fn, "__temporal_activity_definition", None)
            if defn is not None and defn.name.startswith("admin_"):
                found[defn.name.removeprefix("admin_")] = fn
    return found


def test_every_operation_declares_the_type_its_activity_returns() -> None:
    methods = activity_methods()
    assert set(methods) == set(ADMIN_OPS)
    for op, fn in methods.items():
        assert typing.get_type_hints(fn)["return"] == ADMIN_OPS[op].response, op
        assert inspect.signature(fn).return_annotation != "dict", op


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminActivities]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield AdminActivities(catalog)
    catalog.close()


def through_the_converter(value: Any, op: str) -> Any:
    """An activity's answer as the client reads it: JSON on the wire, parsed as the op's response."""
    converter = pydantic_data_converter.payload_converter
    return converter.from_payloads(converter.to_payloads([value]), [ADMIN_OPS[op].response])[0]


def test_answers_reach_the_client_as_their_models_with_the_old_json_shape(admin: AdminActivities,
                                                                          tmp_path: Path) -> None:
    admin.add_site(Site(name="a"))
    admin.add_cluster(Cluster(name="c1", site="a", endpoint=str(tmp_path / "c1")))
    admin.catalog.add_repository(RepositorySpec(name="r1", path="/srv/r1", site="a"))
    spec = BackupPlanSpec.model_validate({
        "name": "gold", "vms": [{"cluster": "c1", "vm": "web"}], "repository": "r1", "schedule": {"kind": "DAILY", "times": ["01:00"]},
        "retention": {"kind": "COUNT", "value": 3}})
    assert through_the_converter(admin.add_backup_plan(spec), "add_backup_plan") == spec
    [view] = through_the_converter(admin.list_backup_plans(NoArgs()), "list_backup_plans")
    assert isinstance(view, BackupPlanView) and view.spec == spec and view.status == "WORKING"
    assert set(view.model_dump(mode="json")) == {"spec", "status", "last_result", "last_run_at"}
    assert view.model_dump(mode="json")["spec"] == spec.model_dump(mode="json")
    assert through_the_converter(admin.list_sites(NoArgs()), "list_sites") == [Site(name="a")]
    assert through_the_converter(admin.list_restore_points(PointFilter()), "list_restore_points") == []
    deleted = through_the_converter(admin.delete_backup_plan(ByName(name="gold")), "delete_backup_plan")
    assert deleted.model_dump(mode="json") == {"deleted": "gold", "points": [], "points_deleted": False}


def test_every_route_documents_its_answer() -> None:
    doc = make_api(Settings(), "responses-" + "q" * 24).openapi()
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            [ok] = [resp for code, resp in op["responses"].items() if code.startswith("2")]
            schema = ok["content"]["application/json"]["schema"]
            ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
            assert ref and ref.rsplit("/", 1)[1] in schemas, (method, path, schema)
    assert {"BackupPlanView", "ReplicationPlanView", "RestorePointSummary", "ReplicaView", "Job", "JobDescription",
            "Started", "BackupPlanSpec"} <= set(schemas)
