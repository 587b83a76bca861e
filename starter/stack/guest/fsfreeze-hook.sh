#!/bin/busybox sh
# The QEMU guest agent's fsfreeze hook in the tests' tiny guest (init.sh starts qemu-ga with
# it; starter/stack/guest/initramfs.py packs it as /bin/fsfreeze-hook). qemu-ga runs it with
# "freeze" before it freezes the file systems and with "thaw" after it thawed them. Like a
# database's hook it quiesces the application: on freeze it asks init.sh's writer to pause
# between two writes and waits until it has, so a snapshot taken while frozen holds exactly
# writes 1..C of the FREEZE marker and none in flight.
say() { echo "ABDR-GUEST-$*" >/dev/console; }
case "$1" in
  freeze)
    while [ -e /tmp/hang ]; do usleep 100000; done  # abdr.agent=hang: a freeze that never ends
    if [ -e /tmp/writer ]; then
      touch /tmp/quiesce
      while [ ! -e /tmp/quiesced ]; do usleep 10000; done
      say "FREEZE c=$(cat /tmp/quiesced)"
    else
      say "FREEZE c=none"
    fi ;;
  thaw)
    rm -f /tmp/quiesce /tmp/quiesced
    say "THAW" ;;
esac
exit 0
