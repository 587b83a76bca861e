"""What the Temporal Web UI shows of a run abdr starts: a one-line summary (the list's
"Summary" column) and details (the run's page), both fixed at start. The live part, the
run's phase, is the workflow's current details (`workflows.common.phase`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

ORIGIN = "Started by abdr (CLI or REST API)."


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.extend(_flat(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def details(arg: Any) -> str:
    """The run's input, one Markdown line a field (defaults left out: what the user asked)."""
    lines = [ORIGIN]
    if isinstance(arg, BaseModel):
        # A RestoreInput's request reads as request.point_id, ... (nested models flattened).
        fields = _flat(arg.model_dump(mode="json", exclude_defaults=True))
        lines += [""] + [f"- **{key}**: `{value}`" for key, value in fields]
    return "\n".join(lines)
