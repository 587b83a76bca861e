#!/bin/busybox sh
# PID 1 of the tests' tiny guest (starter/stack/guest/initramfs.py packs it as /init).
# Mode write (default): keeps writing the pattern of starter/stack/guest/pattern.py to /dev/vda.
# Mode verify (abdr.mode=verify): checks that pattern on the disk and prints a verdict.
# Either way it powers off on the ACPI power button. Where the domain has a QEMU guest agent
# channel and the initramfs has the agent (build_guest(agent=True)), it runs qemu-ga there
# with starter/stack/guest/fsfreeze-hook.sh, which pauses the writer while the agent has the guest
# frozen. Guest tools that fail: abdr.agent=off leaves the agent unstarted, abdr.agent=stopped
# stops it (SIGSTOP) once it runs, abdr.agent=hang makes its freeze hook never return.
# Markers on the serial console start with ABDR-GUEST-; pattern.py holds their names and the pattern's
# definition, which the two helpers below must keep byte for byte.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "ABDR-GUEST-$*" >/dev/console; }

for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || say "ERROR insmod $m"
done

mode=write
interval=20000
agent=on
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    abdr.mode=*) mode=${arg#abdr.mode=} ;;
    abdr.interval_us=*) interval=${arg#abdr.interval_us=} ;;
    abdr.agent=*) agent=${arg#abdr.agent=} ;;
  esac
done

# The agent's port: a virtio-serial port named by the domain's channel. Without udev there is
# no /dev/virtio-ports/<name> link, only /dev/vportNpM; ports appear a moment after the
# virtio-serial device binds (the host announces them on its control queue).
start_agent() {
  [ -x /usr/sbin/qemu-ga ] && [ -d /sys/bus/virtio/drivers/virtio_console ] || return 0
  ls /sys/bus/virtio/drivers/virtio_console | grep -q '^virtio' || return 0  # no virtio-serial device
  port=
  for _ in $(seq 1 100); do
    for p in /sys/class/virtio-ports/vport*; do
      [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -c "$port" ] && break
    usleep 100000
  done
  [ -n "$port" ] || { say "ERROR no guest agent port"; return 0; }
  if [ "$agent" = off ]; then say "AGENT off port=$port"; return 0; fi
  # A file system for the agent to freeze: with none, it freezes nothing, never thaws and
  # never runs the thaw hook (which would leave the writer paused).
  mkdir -p /var/run /data  # /var/run: qemu-ga's state directory
  { mke2fs -q /dev/ram0 && mount -t ext2 /dev/ram0 /data; } >/dev/null 2>&1 || say "ERROR no /data"
  [ "$agent" = hang ] && touch /tmp/hang  # read by the freeze hook
  qemu-ga -m virtio-serial -p "$port" -F/bin/fsfreeze-hook &
  ga=$!
  say "AGENT pid=$ga port=$port"
  if [ "$agent" = stopped ]; then  # once it holds the port open: the host sees it connected
    for _ in $(seq 1 100); do ls -l /proc/$ga/fd 2>/dev/null | grep -q "$port" && break; usleep 100000; done
    kill -STOP "$ga"
    say "AGENT stopped"
  fi
}

for _ in $(seq 1 100); do [ -b /dev/vda ] && break; usleep 100000; done
[ -b /dev/vda ] || { say "ERROR no /dev/vda"; poweroff -f; }
nblk=$(( $(cat /sys/block/vda/size) / 8 ))  # 4 KiB blocks; block 0 is the head
STRIDE=7919

# block N C: the 4 KiB data block counter C writes at block N
block() {
  h=$(printf '%s' "$1:$2" | sha256sum); h=${h%% *}
  s=$h$h; s=$s$s; s=$s$s; s=$s$s; s=$s$s; s=$s$s  # 64 x 64 hex digits
  { printf 'ABDR-BLK %08d %08d\n' "$1" "$2"; printf '%s' "$s"; } | head -c 4096
}
# head C: block 0 after counter C was written
headblk() { { printf 'ABDR-HEAD %08d\n' "$1"; head -c 4096 /dev/zero; } | head -c 4096; }
pos() { echo $(( 1 + ($1 - 1) * STRIDE % (nblk - 1) )); }
counter() {
  c=$(dd if=/dev/vda bs=4096 count=1 2>/dev/null | head -c 18)
  case "$c" in "ABDR-HEAD "*) echo $(( 1${c#ABDR-HEAD } - 100000000 )) ;; *) echo 0 ;; esac
}

# The power button is an input device once button.ko is in; any event on it is a press.
watch_power_button() {
  for d in /sys/class/input/input*; do
    [ "$(cat "$d/name" 2>/dev/null)" = "Power Button" ] || continue
    for e in "$d"/event*; do
      ev=/dev/input/${e##*/}
      dd if="$ev" bs=24 count=1 >/dev/null 2>&1
      [ -n "${writer:-}" ] && kill "$writer" 2>/dev/null && wait "$writer" 2>/dev/null
      sync
      say "POWEROFF c=$(counter)"
      poweroff -f
    done
  done
  say "ERROR no power button"
}

start_agent
if [ "$mode" = verify ]; then
  c=$(counter)
  say "READY mode=verify nblk=$nblk c=$c"
  bad=0
  first=$(( c - nblk + 2 )); [ "$first" -lt 1 ] && first=1
  if [ "$c" -ge 1 ]; then
    for i in $(seq "$first" "$c"); do
      n=$(pos "$i")
      a=$(dd if=/dev/vda bs=4096 skip="$n" count=1 2>/dev/null | sha256sum)
      e=$(block "$n" "$i" | sha256sum)
      [ "$a" = "$e" ] || { bad=$((bad + 1)); say "BAD block=$n c=$i"; }
    done
  fi
  disk=$(sha256sum /dev/vda); disk=${disk%% *}
  if [ "$bad" = 0 ]; then v=ok; else v=bad; fi
  say "VERDICT $v c=$c bad=$bad sha256=$disk"
  watch_power_button
  poweroff -f
fi

c=$(counter)
(
  trap 'exit 0' TERM
  while :; do
    if [ -e /tmp/quiesce ]; then  # the agent's freeze hook: pause until thawed, between writes
      echo "$c" >/tmp/quiesced.new && mv /tmp/quiesced.new /tmp/quiesced
      while [ -e /tmp/quiesce ]; do usleep 10000; done
    fi
    c=$((c + 1)); n=$(pos "$c")
    block "$n" "$c" | dd of=/dev/vda bs=4096 seek="$n" conv=notrunc,fsync 2>/dev/null
    headblk "$c" | dd of=/dev/vda bs=4096 conv=notrunc,fsync 2>/dev/null
    [ $((c % 50)) = 0 ] && say "LOG c=$c"
    usleep "$interval"
  done
) &
writer=$!
echo "$writer" >/tmp/writer
say "READY mode=write nblk=$nblk c=$c"
watch_power_button
poweroff -f
