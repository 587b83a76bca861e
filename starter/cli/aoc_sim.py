"""`abdr aoc-sim`: run the AOC simulator, a test double of an Arcfra Operation Center."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def aoc_sim(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8090,
    state: Annotated[Path | None, typer.Option(help="The simulator's state directory "
                                               "(default <ABDR_DATA_DIR>/aoc-sim).")] = None,
    username: Annotated[str, typer.Option(help="The account the simulator accepts.")] = "root",
    password: Annotated[str, typer.Option(help="Its password.")] = "root",
    source: Annotated[str, typer.Option(help="Its login source.")] = "LOCAL",
    token_ttl: Annotated[float, typer.Option(help="Seconds a login token lives.")] = 3600.0,
    task_delay: Annotated[float, typer.Option(help="Seconds a task stays PENDING, and again EXECUTING.")] = 0.1,
    lease_ttl: Annotated[float, typer.Option(help="Seconds a storage write lease lives unless released.")] = 30.0,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's key (PEM).")] = None,
    storage_access: Annotated[bool, typer.Option(help="Serve the storage data plane (/v2/storage: changed "
                                                 "extents, NBD); --no-storage-access plays an AOC with only "
                                                 "the public API (abdr then reads whole volumes through "
                                                 "export-vm-volume).")] = True,
) -> None:
    """Run the AOC SIMULATOR (not a real AOC): the AOC REST API on loopback, VMs on qcow2
    volumes, a task engine, a storage data plane over NBD and fault injection (/sim/...).
    It serves until stopped (Ctrl-C)."""
    from starter.runtime.settings import get_settings
    from starter.simulators.aoc.server import serve
    from starter.simulators.aoc.sim import SimConfig

    cfg = SimConfig(state=(state or get_settings().data_dir / "aoc-sim").absolute(), username=username,
                    password=password, source=source, token_ttl_s=token_ttl, pending_s=task_delay,
                    executing_s=task_delay, lease_ttl_s=lease_ttl, storage_access=storage_access)
    serve(cfg, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
          ssl_keyfile=str(tls_key) if tls_key else None)
