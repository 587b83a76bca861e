"""What the routers share: the bearer-token check that hands a route the client, the path
and query parameters several nouns use, and the 202 body of a started workflow."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError
from temporalio.client import WorkflowHandle

from models.inventory import NAME_PATTERN, Name, name_problem
from starter.client import AbdrClient, Invalid

bearer = HTTPBearer(auto_error=False)
# Name: a refusal says the naming rules in words (models.inventory.name_problem); the
# document still states the pattern.
PlanName = Annotated[Name, Path(description="A plan's name.")]
PlanQuery = Annotated[Name | None, Query(description="Only this plan's.")]
NamePath = Annotated[Name, Path(description="Its name.")]
ClusterPath = Annotated[Name, Path(description="The cluster's name.")]
VMPath = Annotated[Name, Path(description="The VM's name.")]
SiteQuery = Annotated[Name | None, Query(description="Only this site's.")]
PointPath = Annotated[str, Path(min_length=1, max_length=200, description="A restore point's id.")]


def _vm_ref(value: str) -> str:
    """cluster/vm, each part a name (the same words as every refusal of a name)."""
    cluster, sep, vm = value.partition("/")
    if not sep:
        raise PydanticCustomError("invalid_vm", "{why}", {"why": f"{value!r}: write it cluster/vm"})
    for part in (cluster, vm):
        if (why := name_problem(part)) is not None:
            raise PydanticCustomError("invalid_name", "{why}", {"why": f"{value!r}: {why}"})
    return value


VMName = Annotated[str, AfterValidator(_vm_ref),
                   Field(json_schema_extra={"pattern": NAME_PATTERN.replace("$", "") + "/" + NAME_PATTERN[1:]})]
VMQuery = Annotated[VMName | None, Query(description="Only this VM's, written cluster/vm.")]


def client(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> AbdrClient:
    """The app's client, for a request bearing the app's token (`make_api` keeps both in app.state)."""
    token: str = request.app.state.token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return request.app.state.client


C = Annotated[AbdrClient, Depends(client)]


def same_name(path: str, body: str, what: str) -> None:
    """A PUT's body names what its path names."""
    if body != path:
        raise Invalid(f"the body names {what} {body!r}, the path {path!r}")


class Started(BaseModel):
    """A workflow started: follow it with `GET /v1/jobs/{workflow_id}` or in the Web UI."""

    workflow_id: str
    run_id: str | None
    ui: str = Field(description="The run in the Temporal Web UI.")


def started(c: AbdrClient, h: WorkflowHandle) -> Started:
    return Started(workflow_id=h.id, run_id=h.result_run_id, ui=c.ui_link(h.id, h.result_run_id))
