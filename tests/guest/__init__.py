"""The tests' tiny real guest: `initramfs.build_guest` makes it, `pattern` says what it writes,
`domain` runs it under libvirt (that module needs the libvirt bindings; the others do not)."""
