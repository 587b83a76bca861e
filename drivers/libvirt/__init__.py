"""The libvirt/QEMU cluster driver (see driver.py)."""

from drivers.libvirt.driver import LibvirtDriver

__all__ = ["LibvirtDriver"]
