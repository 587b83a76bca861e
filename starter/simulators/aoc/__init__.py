"""The AOC simulator: a FastAPI/uvicorn server speaking the AOC (CloudTower-style) REST API
on loopback, with its state on disk, VM volumes as real qcow2 files, snapshots as qcow2
overlays (drivers/qcow2), an asynchronous task engine, ResourceLocked locks, expiring
tokens, a storage data plane (`/v2/storage/...`, changed extents and NBD exports: what abdr
needs of a real deployment's block storage, docs/driver-contract.md) and fault injection
(`/sim/...`). No QEMU runs: power state is simulated. Run it with `abdr aoc-sim`."""
