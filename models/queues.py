"""Task queue names: one for workflows, one per site for the activities that touch that
site's clusters and repositories (the site's backup/replication service)."""

WORKFLOW_TASK_QUEUE = "abdr-workflows"


def site_task_queue(site: str) -> str:
    return f"abdr-site-{site}"
