"""abdr's custom search attributes: typed keys, so the Web UI and `list_workflows` can
filter runs by plan, VM, site, operation and phase. Registered on the server at start."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PLAN = SearchAttributeKey.for_keyword("AbdrPlan")
VM = SearchAttributeKey.for_keyword("AbdrVM")
SITE = SearchAttributeKey.for_keyword("AbdrSite")
OPERATION = SearchAttributeKey.for_keyword("AbdrOperation")
PHASE = SearchAttributeKey.for_keyword("AbdrPhase")

ALL = (PLAN, VM, SITE, OPERATION, PHASE)


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` flags that register every abdr search attribute."""
    return [arg for key in ALL for arg in ("--search-attribute", f"{key.name}=Keyword")]
