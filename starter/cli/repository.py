"""`abdr repository`: backup repositories, where restore points live; verify, prune, GC."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.admin import CreatedRepository, FindingsPage
from models.jobs import MaintenanceResult
from models.services import RepositoryCreate
from starter.cli.common import cli_errors, with_client
from starter.cli.grammar import UsageError
from starter.cli.options import JsonOpt
from starter.cli.progress import with_spinner
from starter.cli.render import emit, human_bytes, say, show_workflow, table

if TYPE_CHECKING:
    from starter.client import AbdrClient

app = typer.Typer(help="Backup repositories: where restore points live.", no_args_is_help=True)


@app.command("create")
def repo_create(
    name: str,
    path: Annotated[Path, typer.Option(help="The (mounted) directory, as the site's worker sees it.")],
    site: Annotated[str, typer.Option(help="The site whose worker owns it.")] = "default",
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    encrypt: Annotated[bool, typer.Option(help="Encrypt chunks and manifests (AES-256-GCM) under a key the "
                                               "site's worker keeps in its key directory; keep a copy of the "
                                               "key file: without it nothing can be restored.")] = False,
    key_file: Annotated[Path | None, typer.Option(help="With --encrypt: use this existing key file (path as "
                                                       "the site's worker sees it) instead of a new key.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a repository (or adopt an existing abdr repository at that path)."""
    with cli_errors():
        if key_file is not None and not encrypt:
            raise UsageError("--key-file is the key of an encrypted repository: give --encrypt too")
        spec = RepositoryCreate(name=name, path=str(path.absolute()), site=site, description=description,
                                encrypt=encrypt, key_file=str(key_file.absolute()) if key_file else None)
        repo = with_client(lambda c: c.create_repository(spec))
        emit(repo, as_json, _render_created)


def _render_created(r: CreatedRepository) -> None:
    say(f"repository [bold]{r.name}[/bold] at {r.path} (site {r.site})")
    if r.key_file:
        say(f"encrypted; the site's worker keeps its key at {r.key_file} (key id {r.key_id}). Keep a copy "
            "of that file somewhere safe, outside the repository: without it no point can be restored.")


@app.command("add-key")
def repo_add_key(
    name: str,
    key_file: Annotated[Path, typer.Option(help="The repository's key file, as the site's worker sees it.")],
    as_json: JsonOpt = False,
) -> None:
    """Give the site's worker the key of an encrypted repository (a wrong key is refused)."""
    with cli_errors():
        out = with_client(lambda c: c.add_repository_key(name, str(key_file.absolute())))
        emit(out, as_json, lambda o: say(f"repository {o.name}: key {o.key_id} installed at {o.key_file}"))


@app.command("list")
def repo_list(as_json: JsonOpt = False) -> None:
    """List repositories."""
    with cli_errors():
        repos = with_client(lambda c: c.list_repositories())
        emit(repos, as_json, lambda rows: table(rows, ["name", "kind", "path", "site", "description"],
                                                     "repositories"))


@app.command("verify")
def repo_verify(
    name: str,
    prune: Annotated[bool, typer.Option(help="Also delete points every plan's retention lets go.")] = False,
    gc: Annotated[bool, typer.Option(help="Also remove chunks no point references.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the result (exit 1 if anything is damaged).")] = False,
    read_iops: Annotated[int | None, typer.Option(min=1, help="Cap verify's and GC's reads (64 KiB I/Os per "
                                                               "second), to spare running backups.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a repository as a RepositoryMaintenance workflow: re-hash every referenced chunk, cross-check the catalog, set damaged chunks aside so the next backup stores them anew."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, Any, MaintenanceResult | None]:
            handle = await c.maintain_repository(name, verify=True, prune=prune, gc=gc, read_iops=read_iops)
            if not wait:
                return c, handle, None
            label = f"verifying repository {name}"
            done = await with_spinner(c.result(handle), label, not as_json)
            return c, handle, MaintenanceResult.model_validate(done)

        client, handle, result = with_client(run)
        if result is None:
            show_workflow(client, handle, as_json, f"maintenance of {name}")
            return
        emit(result, as_json, _render_maintenance)
        if result.damaged:
            raise typer.Exit(1)


def _render_maintenance(r: MaintenanceResult) -> None:
    say(f"repository [bold]{r.repository}[/bold]: {r.verified_points} points verified, "
        f"{r.findings} findings, {r.counts.get('damaged_points', 0)} damaged points, "
        f"{r.pruned_count} pruned, {r.healed_points} healed, "
        f"gc removed {r.gc_removed_chunks} chunks ({human_bytes(r.gc_removed_bytes)})")
    if r.damaged:
        _findings_table(r.damaged)
        if r.findings > len(r.damaged):
            say(f"... and {r.findings - len(r.damaged)} more: `abdr repository findings {r.repository} "
                f"--offset {len(r.damaged)}`")


FINDING_COLUMNS = ["kind", "point_id", "disk", "offset", "length", "problem", "detail"]


def _findings_table(rows: list[dict]) -> None:
    table([{k: f.get(k, "") for k in FINDING_COLUMNS} for f in rows], FINDING_COLUMNS, "findings")


@app.command("findings")
def repo_findings(
    name: str,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many findings.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Page through the last verify's findings (a verify's result carries only the first few)."""
    with cli_errors():
        page = with_client(lambda c: c.repository_findings(name, offset, limit))

        def render(p: FindingsPage) -> None:
            shown = len(p.findings)
            say(f"repository [bold]{p.repository}[/bold]: findings {p.offset + 1 if shown else p.offset}-"
                f"{p.offset + shown} of {p.total}")
            if shown:
                _findings_table(p.findings)

        emit(page, as_json, render)
