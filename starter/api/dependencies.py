"""What the routers share: the bearer-token check that hands a route the client, the path
and query parameters several nouns use, and the 202 body of a started workflow."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from temporalio.client import WorkflowHandle

from models.inventory import NAME_PATTERN
from starter.client import AbdrClient

bearer = HTTPBearer(auto_error=False)
PlanName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="A plan's name.")]
PlanQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63, description="Only this plan's.")]
VMQuery = Annotated[str | None, Query(pattern=NAME_PATTERN.replace("$", "") + "/" + NAME_PATTERN[1:],
                                      description="Only this VM's, written cluster/vm.")]


def client(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> AbdrClient:
    """The app's client, for a request bearing the app's token (`make_api` keeps both in app.state)."""
    token: str = request.app.state.token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return request.app.state.client


C = Annotated[AbdrClient, Depends(client)]


class Started(BaseModel):
    """A workflow started: follow it with `GET /v1/jobs/{workflow_id}` or in the Web UI."""

    workflow_id: str
    run_id: str | None
    ui: str = Field(description="The run in the Temporal Web UI.")


def started(c: AbdrClient, h: WorkflowHandle) -> Started:
    return Started(workflow_id=h.id, run_id=h.result_run_id, ui=c.ui_link(h.id, h.result_run_id))
