"""What an operator sees in the Temporal Web UI, in a real browser (Debian's headless
Chromium): the workflow list filtered by a plan's search attribute (AbdrPlan) shows that
plan's runs, a restore of its point among them, and no other plan's; each run's page shows
its static summary (this UI's list has no summary column: its list API carries none). The
list's screenshot and DOM are kept beside the test's files (web-ui-plan.png, list.html)."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from urllib.parse import quote, unquote

from models.ids import plan_run_id, restore_id, vm_backup_id
from tests.e2e.browser import WINDOW, dump_dom, png_size
from tests.e2e.conftest import Stack
from tests.e2e.test_backup_restore import plan_spec

ROW = 'data-testid="workflows-summary-configurable-table-row"'


async def listed(stack: Stack, query: str, count: int) -> None:
    """Wait until the server's visibility lists `count` workflows for `query` (the list the
    UI reads; runs that just ended may take a moment to be indexed)."""
    for _ in range(300):
        if len([w async for w in stack.client.client.list_workflows(query)]) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server never listed {count} workflows for {query}")


async def test_web_ui_filtered_by_a_plan_shows_its_runs_and_summaries(stack: Stack, temporal_ui_url: str) -> None:
    plan, other, copy = f"shot-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}", "web-shot"
    stack.make_vm("web")
    await stack.client.create_backup_plan(plan_spec(plan, ["web"]))
    await stack.client.create_backup_plan(plan_spec(other, ["web"]))
    run = await stack.cli_json("backup-plan", "run", plan, "--full", "--wait")
    await stack.cli("backup-plan", "run", other, "--wait")
    point = run["vms"][0]["point_id"]
    await stack.cli("restore", point, "--mode", "rebuild", "--new-name", copy, "--wait")
    summaries = {plan_run_id(plan): f"manual full run of backup plan {plan}",
                 vm_backup_id(plan, "c1", "web"): f"backup of c1/web for plan {plan}",
                 restore_id("c1", copy): f"REBUILD restore of c1/web point {point} to c1/{copy}"}
    query = f'AbdrPlan = "{plan}"'
    await listed(stack, query, len(summaries))

    ns = stack.settings.temporal_namespace
    url = f"{temporal_ui_url}/namespaces/{ns}/workflows?query={quote(query)}"
    shot = stack.tmp / "web-ui-plan.png"
    dom = await dump_dom(url, shot)  # the picture is of the page whose DOM is checked below
    assert png_size(shot.read_bytes()) == WINDOW
    (stack.tmp / "list.html").write_text(dom)
    # Each row links to its run's page: exactly this plan's runs (its VM's child run too), the
    # other plan's not among them.
    runs = {unquote(w): r for w, r in re.findall(rf'href="/namespaces/{ns}/workflows/([^/"]+)/([^/"?]+)/', dom)}
    assert set(runs) == set(summaries), (runs, dom[-3000:])
    assert dom.count(ROW) == len(summaries), dom[-3000:]
    assert quote(plan_run_id(other), safe="") not in dom and other not in dom
    for workflow_id, summary in summaries.items():
        run_page = f"{temporal_ui_url}/namespaces/{ns}/workflows/{quote(workflow_id, safe='')}/{runs[workflow_id]}/history"
        page = await dump_dom(run_page)
        assert html.escape(summary) in page, (workflow_id, summary, page[-3000:])
