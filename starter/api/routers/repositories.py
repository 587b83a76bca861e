"""/v1/repositories: where restore points live; their keys, verify (with prune and GC) and
its findings."""

from typing import Annotated

from fastapi import APIRouter, Body, Query

from models.admin import CreatedRepository, FindingsPage, InstalledKey
from models.services import RepositoryCreate, RepositoryKey, RepositorySpec
from starter.api import examples as ex
from starter.api.dependencies import C, NamePath, Started, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/repositories")
async def list_repositories(c: C) -> list[RepositorySpec]:
    return await c.list_repositories()


@router.post("/v1/repositories", status_code=201)
async def create_repository(spec: Annotated[RepositoryCreate, Body(openapi_examples=ex.REPOSITORY)],
                            c: C) -> CreatedRepository:
    """Create a repository at `path` on its site's worker (or adopt an abdr repository there)."""
    return await c.create_repository(spec)


@router.post("/v1/repositories/{name}/key")
async def add_repository_key(name: NamePath, key: Annotated[RepositoryKey, Body(openapi_examples=ex.KEY)],
                             c: C) -> InstalledKey:
    """Give the site's worker the key of an encrypted repository, by path (a wrong key is refused)."""
    return await c.add_repository_key(name, key.key_file)


@router.post("/v1/repositories/{name}/verify", status_code=202)
async def verify_repository(name: NamePath, c: C, prune: bool = False, gc: bool = False,
                            read_iops: Annotated[int | None, Query(ge=1)] = None) -> Started:
    """Verify every referenced chunk (and with `prune` apply retention, with `gc` remove
    unreferenced chunks) as a RepositoryMaintenance workflow; its result is the job's."""
    return started(c, await c.maintain_repository(name, verify=True, prune=prune, gc=gc, read_iops=read_iops))


@router.get("/v1/repositories/{name}/findings")
async def repository_findings(name: NamePath, c: C, offset: Annotated[int, Query(ge=0)] = 0,
                              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> FindingsPage:
    """A page of the last verify's findings."""
    return await c.repository_findings(name, offset, limit)
