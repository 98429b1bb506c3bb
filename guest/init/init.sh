#!/bin/busybox sh
# The guest's /init (busybox sh, PID 1). The contract it implements is documented in
# docs/guest.md and summarised in src/drivers/image/guest-init.ts. Console lines
# prefixed "aleph-guest:" are the init's own.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
say() { echo "aleph-guest: $*"; }
fail() { say "$*"; sync; reboot -f; }

for m in $(cat /etc/aleph/modules); do insmod "/lib/modules/aleph/$m.ko" 2>/dev/null; done
# The node's control channel (clock and entropy after a restore from a snapshot).
[ -x /bin/aleph-agent ] && /bin/aleph-agent &

ip=; gw=; dns=; ip6=; gw6=; pool=; preload=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    aleph.pool=1) pool=1 ;;
    aleph.preload=*) preload="${arg#aleph.preload=}" ;;
    aleph.ip=*) ip="${arg#aleph.ip=}" ;;
    aleph.gw=*) gw="${arg#aleph.gw=}" ;;
    aleph.ip6=*) ip6="${arg#aleph.ip6=}" ;;
    aleph.gw6=*) gw6="${arg#aleph.gw6=}" ;;
    aleph.dns=*) dns="${arg#aleph.dns=}" ;;
  esac
done

wait_dev() { n=0; while [ ! -e "$1" ] && [ $n -lt 1000 ]; do usleep 20000; n=$((n+1)); done; }
# The node of the drive whose serial is $1 (qemu sets the drive id as serial).
# Shell built-ins only (no fork): a warm VM polls this while it waits, under TCG too.
serial_node() {
  for s in /sys/block/vd*/serial; do
    serial=; [ -f "$s" ] && read -r serial < "$s" 2>/dev/null
    [ "$serial" = "$1" ] && { d="${s%/serial}"; node="/dev/${d##*/}"; return 0; }
  done
  return 1
}

# The runtime ($1, of type $2) as the program's root: read-only under a tmpfs overlay
# at /newroot.
root=
mount_root() {
  mkdir -p /mnt/runtime /mnt/rootrw /newroot
  mount -t "$2" -o ro "$1" /mnt/runtime || return 1
  mount -t tmpfs -o mode=0755 tmpfs /mnt/rootrw
  mkdir -p /mnt/rootrw/upper /mnt/rootrw/work
  mount -t overlay overlay -o lowerdir=/mnt/runtime,upperdir=/mnt/rootrw/upper,workdir=/mnt/rootrw/work /newroot || return 1
  root=/newroot
}

# The program's view of the root: /proc, /sys, /dev, /run of its own, our guest files
# at /opt/aleph-guest (read-only) and a busybox for the launcher. On a boot, after the
# volumes (mounted over them, a volume would hide these).
prepared=
prepare_root() {
  prepared=1
  for d in proc sys dev run tmp opt/aleph-guest etc; do mkdir -p "$root/$d"; done
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount -o bind /dev "$root/dev"
  mount -o bind /dev/pts "$root/dev/pts"
  mkdir -p "$root/dev/shm" && mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  chmod 1777 "$root/tmp"
  if [ -d /opt/aleph-guest ]; then
    mount -o bind /opt/aleph-guest "$root/opt/aleph-guest" && mount -o remount,bind,ro "$root/opt/aleph-guest"
  fi
  mkdir -p "$root/run/aleph" && cp /bin/busybox "$root/run/aleph/busybox"
}

# A warm VM's preloaded Python (aleph.preload=<modules>, guest/aleph_preload): started
# on the runtime before any program, it imports those modules and waits; once a
# program is attached it becomes that program, or refuses (then the program starts
# as after a boot). docs/warm-pool.md.
preload_pid=
preload_dir=
start_preload() {
  serial_node runtime || { say "no runtime drive: no preloaded Python"; return; }
  mount_root "$node" squashfs && prepare_root || { say "cannot mount the runtime for the preloaded Python"; return; }
  preload_dir="$root/run/aleph/preload"
  mkdir -p "$preload_dir" && mkfifo "$preload_dir/go"
  chroot "$root" /run/aleph/busybox env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PYTHONPATH=/opt/aleph-guest \
    python3 -m aleph_preload /run/aleph/preload $(echo "$preload" | tr , ' ') &
  preload_pid=$!
  until [ -f "$preload_dir/ready" ]; do
    kill -0 "$preload_pid" 2>/dev/null || { say "the preloaded Python exited"; preload_pid=; return; }
    read -r -t 0.05 _ <&3 || true
  done
  say "preloaded $(cat "$preload_dir/ready")"
}

# Hands the attached program ($@, in $cwd, with this shell's environment) to the
# preloaded Python. Sets pid when it took the program.
hand_to_preload() {
  printf '%s\n' "$@" > "$preload_dir/entry"
  echo "$cwd" > "$preload_dir/cwd"
  export -p > "$preload_dir/env"
  # Read-write: never blocks, whether or not the Python still reads.
  echo go 1<>"$preload_dir/go"
  until [ -f "$preload_dir/answer" ]; do
    kill -0 "$preload_pid" 2>/dev/null || break
    read -r -t 0.05 _ <&3 || true
  done
  answer=; [ -f "$preload_dir/answer" ] && read -r answer < "$preload_dir/answer"
  if [ "$answer" = taken ]; then
    pid=$preload_pid
    say "the preloaded Python took the program"
  else
    say "the preloaded Python did not take the program (${answer:-it exited}): starting it"
    kill -KILL "$preload_pid" 2>/dev/null; wait "$preload_pid" 2>/dev/null
  fi
  rm -rf "$preload_dir"
  preload_pid=
}

# A warm-pool VM (aleph.pool=1) boots with no program and waits here until the node
# hot-plugs one: its NIC, its drives, and last a drive with serial "program" holding
# the per-program archive (/etc/aleph/*, /app), unpacked over / as the initramfs
# would have been. From there on it is an ordinary boot. docs/warm-pool.md.
if [ -n "$pool" ]; then
  trap 'say "stopped while waiting for a program"; sync; reboot -f' INT TERM
  # Looks every 0.2 s without forking (a read timeout on a pipe nobody writes is the
  # sleep; serial_node uses built-ins only): an idle TCG guest that forked a sleep every
  # 50 ms spent a tenth of a core on it.
  mkfifo /run/aleph-wait && exec 3<>/run/aleph-wait
  [ -n "$preload" ] && start_preload
  say "waiting for a program"
  until serial_node program; do read -r -t 0.2 _ <&3 || true; done
  [ -n "$preload_pid" ] || { exec 3<&-; rm -f /run/aleph-wait; }
  program="$node"
  wait_dev "$program"
  ( cd / && cpio -i -d -u < "$program" 2>/dev/null ) || fail "cannot unpack the program from $program"
  trap - INT TERM
  say "program attached"
fi

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 1000 ]; do usleep 20000; n=$((n+1)); done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  [ -n "$ip" ] && ip addr add "$ip" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
  [ -n "$ip6" ] && ip -6 addr add "$ip6" dev eth0
  [ -n "$gw6" ] && ip -6 route add default via "$gw6" dev eth0
else
  say "no network device (eth0)"
fi

# A drive named in /etc/aleph/mounts by its id and its expected node: the node whose
# serial is the id when the VMM sets serials (qemu), else the expected one (the
# VMM attaches drives in the listed order).
device_of() {
  # Hot-plugged drives (a warm-pool VM) appear in no set order: wait for the serial.
  if [ -n "$pool" ]; then
    n=0; while [ $n -lt 1000 ]; do serial_node "$1" && { echo "$node"; return; }; usleep 20000; n=$((n+1)); done
  fi
  wait_dev "/dev/$2"
  if serial_node "$1"; then echo "$node"; else echo "/dev/$2"; fi
}

# /etc/aleph/mounts: "<id> <device> <mount point> <fstype> <mode>" per line, in
# order (the runtime first). mode: root (the runtime: read-only, under a tmpfs
# overlay that becomes the program's /), ro, rw, overlay (read-only image under a
# tmpfs overlay: writable, reset at each boot).
mounted=
if [ -f /etc/aleph/mounts ]; then
  while read -r id dev target fstype mode; do
    case "$id" in ''|'#'*) continue ;; esac
    node="$(device_of "$id" "$dev")"
    if [ "$mode" = root ]; then
      # A warm VM with a preloaded Python has its root already: the pool's runtime,
      # which the node checked is this program's.
      [ -n "$root" ] || mount_root "$node" "$fstype" || fail "cannot mount the runtime ($id on $node) as the root"
      continue
    fi
    at="$root$target"
    mkdir -p "$at" || fail "cannot create the mount point $target"
    case "$mode" in
      ro) mount -t "$fstype" -o ro "$node" "$at" || fail "cannot mount $id ($node) on $target" ;;
      rw) mount -t "$fstype" -o rw "$node" "$at" || fail "cannot mount $id ($node) on $target" ;;
      overlay)
        base="/mnt/volumes/$id"
        mkdir -p "$base/lower" "$base/rw"
        mount -t "$fstype" -o ro "$node" "$base/lower" || fail "cannot mount $id ($node)"
        mount -t tmpfs tmpfs "$base/rw" && mkdir -p "$base/rw/upper" "$base/rw/work"
        mount -t overlay overlay -o "lowerdir=$base/lower,upperdir=$base/rw/upper,workdir=$base/rw/work" "$at" \
          || fail "cannot mount the overlay of $id on $target" ;;
      *) fail "unknown mount mode $mode for $id" ;;
    esac
    mounted="$at $mounted"
  done < /etc/aleph/mounts
fi

hostname=aleph
[ -f /etc/aleph/hostname ] && hostname="$(cat /etc/aleph/hostname)"
hostname "$hostname"

if [ -n "$root" ]; then
  [ -n "$prepared" ] || prepare_root
  echo "$hostname" > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost\n' "$hostname" > "$root/etc/hosts"
  [ -n "$dns" ] && { rm -f "$root/etc/resolv.conf"; echo "nameserver $dns" > "$root/etc/resolv.conf"; }
else
  [ -n "$dns" ] && echo "nameserver $dns" > /etc/resolv.conf
fi

# Shutdown requests reach PID 1 as SIGINT: Ctrl-Alt-Del (Firecracker SendCtrlAltDel)
# from the kernel, the ACPI power button (QMP system_powerdown) through acpid.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\nkill -INT 1\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080
# The power button's input device appears asynchronously; acpid only scans at start.
( wait_dev /dev/input/event0; exec acpid -f -d -c /etc/acpi >/dev/null 2>&1 ) &

# The node reaches the program from the gateway (the tap's host address, or 10.0.2.2
# under user-mode networking): its X-Forwarded-* are the ones to believe (aleph_asgi
# and uvicorn read FORWARDED_ALLOW_IPS). The program's own env may say otherwise.
[ -n "$gw" ] && export FORWARDED_ALLOW_IPS="$gw"
[ -f /etc/aleph/env ] && . /etc/aleph/env
# /etc/aleph/entry: the program's argv, one argument per line (default /app/start).
set --
if [ -f /etc/aleph/entry ]; then
  while IFS= read -r a; do set -- "$@" "$a"; done < /etc/aleph/entry
fi
[ $# -gt 0 ] || set -- /app/start
cwd=/app
[ -f /etc/aleph/cwd ] && cwd="$(cat /etc/aleph/cwd)"
stop_timeout=2
[ -f /etc/aleph/stop-timeout ] && stop_timeout="$(cat /etc/aleph/stop-timeout)"

say "starting $1 (ip ${ip:-none}, host $hostname)"
pid=
stop_program() {
  say "shutdown requested, stopping the program"
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  # kill -1 spares PID 1 and the caller: the program and its children go, then the
  # main loop below unmounts the volumes and resets.
  ( sleep "$stop_timeout"; say "program did not stop within ${stop_timeout}s, killing it"; kill -KILL -1 ) &
}
trap stop_program INT TERM
if [ -n "$preload_pid" ]; then
  hand_to_preload "$@"
  exec 3<&-
  rm -f /run/aleph-wait
fi
if [ -n "$pid" ]; then
  : # the preloaded Python is the program
elif [ -n "$root" ]; then
  # chroot, not switch_root: PID 1 stays here, so it can unmount the volumes (the
  # ext4 ones cleanly) whatever the runtime contains.
  chroot "$root" /run/aleph/busybox sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$cwd" "$@" &
  pid=$!
else
  cd "$cwd" 2>/dev/null || cd /
  "$@" &
  pid=$!
fi
status=0
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
wait "$pid" 2>/dev/null; last=$?; [ "$last" -ne 127 ] && status=$last
say "program exited with status $status"
kill -TERM -1 2>/dev/null; usleep 100000; kill -KILL -1 2>/dev/null
sync
for at in $mounted; do umount "$at" 2>/dev/null || mount -o remount,ro "$at" 2>/dev/null; done
sync
reboot -f
