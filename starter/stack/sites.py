"""The sites `abdr up` serves besides ABDR_SITE, and their settings: shared by the stack
runner and the demo it seeds."""

from __future__ import annotations

from starter.runtime.settings import Settings


def extra_sites(settings: Settings) -> list[str]:
    """The sites whose activity workers `abdr up` runs besides ABDR_SITE's (ABDR_EXTRA_SITES)."""
    return [s for s in settings.extra_sites if s != settings.site]


def site_settings(settings: Settings, site: str) -> Settings:
    """An extra site's settings: its own site name, and its own transport server on a free
    port of the same host (two servers cannot share one fixed port or announced URL)."""
    host, _, _ = settings.transport_listen.rpartition(":")
    return settings.model_copy(update={"site": site, "transport_listen": f"{host}:0", "transport_url": ""})
