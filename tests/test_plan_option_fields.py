"""Plan options reach the spec from every interface (options, plan files), and an option
abdr cannot honour is refused with a clear error instead of being stored and ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.replication import ReplicationPlanSpec
from starter.cli.plan_files import load_replication_plan_file
from starter.cli.plan_options import ReplicationOptions, replication_plan_from_options

BASE = {"source_site": "a", "target_site": "b", "target_cluster": "cb", "vms": ["ca/web"], "schedule": "every 15m",
        "retention": "count:5"}


def test_thin_provisioning_and_abort_at_window_end_from_options_and_files(tmp_path: Path) -> None:
    spec = replication_plan_from_options("p", ReplicationOptions(**BASE))  # type: ignore[arg-type]
    assert (spec.thin_provisioning, spec.abort_window_unfinished, spec.compression) == (True, False, True)
    o = ReplicationOptions(**BASE, thin_provisioning=False, abort_window_unfinished=True,  # type: ignore[arg-type]
                           compression=False, window="22:00-06:00")
    spec = replication_plan_from_options("p", o)
    assert (spec.thin_provisioning, spec.abort_window_unfinished, spec.compression) == (False, True, False)
    # update: only what is given changes
    again = replication_plan_from_options("p", ReplicationOptions(thin_provisioning=True), spec.model_dump(mode="json"))
    assert (again.thin_provisioning, again.abort_window_unfinished) == (True, True)
    f = tmp_path / "p.yaml"
    f.write_text("name: p\nsource_site: a\ntarget_site: b\ntarget_cluster: cb\nvms: [ca/web]\nschedule: every 15m\n"
                 "window: 22:00-06:00\nretention: count:5\nthin_provisioning: false\nabort_window_unfinished: true\n")
    assert load_replication_plan_file(f) == spec.model_copy(update={"compression": True})


def test_storage_policy_is_refused_but_old_specs_still_load() -> None:
    spec = replication_plan_from_options("p", ReplicationOptions(**BASE))  # type: ignore[arg-type]
    stored = {**spec.model_dump(mode="json"), "storage_policy": "default"}  # as older catalogs hold it
    assert ReplicationPlanSpec.model_validate(stored) == spec
    assert "storage_policy" not in spec.model_dump() and "storage_policy" not in ReplicationPlanSpec.model_json_schema()[
        "properties"]
    with pytest.raises(ValidationError, match="storage_policy is not supported"):
        ReplicationPlanSpec.model_validate({**stored, "storage_policy": "REPLICA_3_THICK_PROVISION"})
