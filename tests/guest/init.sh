#!/bin/busybox sh
# PID 1 of the tests' tiny guest (tests/guest/initramfs.py packs it as /init).
# Mode write (default): keeps writing the pattern of tests/guest/pattern.py to /dev/vda.
# Mode verify (abdr.mode=verify): checks that pattern on the disk and prints a verdict.
# Either way it powers off on the ACPI power button. Markers on the serial console start
# with ABDR-GUEST-; pattern.py holds their names and the pattern's definition, which the
# two helpers below must keep byte for byte.
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
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    abdr.mode=*) mode=${arg#abdr.mode=} ;;
    abdr.interval_us=*) interval=${arg#abdr.interval_us=} ;;
  esac
done

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
    c=$((c + 1)); n=$(pos "$c")
    block "$n" "$c" | dd of=/dev/vda bs=4096 seek="$n" conv=notrunc,fsync 2>/dev/null
    headblk "$c" | dd of=/dev/vda bs=4096 conv=notrunc,fsync 2>/dev/null
    [ $((c % 50)) = 0 ] && say "LOG c=$c"
    usleep "$interval"
  done
) &
writer=$!
say "READY mode=write nblk=$nblk c=$c"
watch_power_button
poweroff -f
