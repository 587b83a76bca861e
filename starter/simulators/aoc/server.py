"""Run the AOC simulator: uvicorn on loopback until stopped (SIGINT/SIGTERM), then every
NBD server it started is ended."""

from __future__ import annotations

import logging

import uvicorn

from starter.simulators.aoc.app import build_app
from starter.simulators.aoc.sim import Sim, SimConfig

log = logging.getLogger("abdr.aoc-simulator")


def serve(cfg: SimConfig, host: str = "127.0.0.1", port: int = 8090, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s AOC-SIMULATOR %(levelname)s %(message)s")
    sim = Sim(cfg)
    scheme = "https" if ssl_certfile else "http"
    log.info("AOC simulator (a test double, not a real AOC) on %s://%s:%d, state in %s; clusters: %s",
             scheme, host, port, cfg.state, ", ".join(f"{c['name']}={c['id']}" for c in sim.store.rows("clusters")))
    try:
        # A client that dropped mid-handshake (an untrusted certificate) leaves a connection
        # uvicorn would otherwise wait on for ever when told to stop.
        uvicorn.run(build_app(sim), host=host, port=port, log_level="warning",
                    ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, timeout_graceful_shutdown=3)
    finally:
        sim.storage.stop_all()
        sim.engine.pool.shutdown(wait=False, cancel_futures=True)
        log.info("AOC simulator stopped")
