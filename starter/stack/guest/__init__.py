"""The tiny real guest: the host's Debian kernel plus a busybox initramfs whose init keeps
writing a self-checking block pattern to its disk, prints markers on the serial console and
powers off on the ACPI button (optionally with a real QEMU guest agent). `abdr up`'s libvirt
demo boots it and protects it; the hypervisor tests use it as their oracle."""
