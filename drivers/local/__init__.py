"""The embedded local cluster driver (pure Python, a directory per cluster)."""

from drivers.local.driver import BLOCK_SIZE, LocalDriver

__all__ = ["BLOCK_SIZE", "LocalDriver"]
