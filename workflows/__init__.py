"""abdr's workflows; `ALL` is what the orchestration worker registers."""

from workflows.health import HealthCheckWorkflow

ALL: list[type] = [HealthCheckWorkflow]
