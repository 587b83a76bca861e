"""qcow2 v3 image chains and NBD block access through QEMU's own tools: the storage layer
of every driver whose disks are qcow2 files (libvirt/QEMU; the AOC simulator's volumes)."""
