"""The AOC driver: abdr on Arcfra clusters through the AOC (CloudTower-style) REST API, its
data plane through the storage access a deployment exposes (docs/driver-contract.md)."""

from drivers.aoc.driver import AocDriver

__all__ = ["AocDriver"]
