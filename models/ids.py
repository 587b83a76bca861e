"""Workflow ids: readable and deterministic, so a second run of the same thing on the same
VM is refused or joined by Temporal, never doubled. Shared by the workflows (child ids)
and the client (the ids it starts, signals and looks up)."""

from __future__ import annotations


def plan_run_id(plan: str) -> str:
    """A backup plan's run: one at a time, scheduled or manual."""
    return f"backup-plan/{plan}"


def vm_backup_id(plan: str, cluster: str, vm: str) -> str:
    return f"backup/{plan}/{cluster}/{vm}"


def restore_id(cluster: str, vm: str) -> str:
    return f"restore/{cluster}/{vm}"


def replication_run_id(plan: str) -> str:
    """A replication plan's run: one at a time, scheduled or manual."""
    return f"replication-plan/{plan}"


def replicate_id(plan: str, vm: str) -> str:
    return f"replication/{plan}/{vm}"


def dr_id(plan: str, vm: str) -> str:
    """Failover, undo, failback, permanent failover: one DR operation per VM at a time."""
    return f"dr/{plan}/{vm}"


def drill_id(plan: str, vm: str) -> str:
    return f"drill/{plan}/{vm}"


def maintenance_id(repository: str) -> str:
    """A repository's maintenance: one at a time (the repository's lock keeps two apart too)."""
    return f"maintenance/{repository}"
