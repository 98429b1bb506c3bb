// The guest's /init (busybox sh, PID 1). The guest contract, in one place:
//   kernel arguments  aleph.ip=<addr>/<prefix>  aleph.gw=<addr>  aleph.dns=<addr>
//                     aleph.code=<block device>  (optional: code on a read-only drive instead of /app in the initramfs)
//                     aleph.data=<block device>  (optional: a writable data volume mounted on /data)
//   /etc/aleph/env    shell `export NAME='value'` lines, sourced before the program starts
//   /etc/aleph/entry  the entrypoint (default /app/start); it must serve HTTP on port 8080
//   readiness         the host decides: the first HTTP answer on :8080 means ready
//   shutdown          SIGINT to PID 1 (Ctrl-Alt-Del, or the ACPI power button via acpid) -> SIGTERM
//                     to the program, reset after 2 s at most; when the program exits the VM resets
//                     (qemu runs with -no-reboot and Firecracker exits on reset, so the VMM exits too)
// Console lines prefixed "aleph-guest:" are the init's own.

export const GUEST_INIT = `#!/bin/busybox sh
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

for m in $(cat /etc/aleph/modules); do insmod "/lib/modules/aleph/$m.ko" 2>/dev/null; done

ip=; gw=; dns=; code=; data=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    aleph.ip=*) ip="\${arg#aleph.ip=}" ;;
    aleph.gw=*) gw="\${arg#aleph.gw=}" ;;
    aleph.dns=*) dns="\${arg#aleph.dns=}" ;;
    aleph.code=*) code="\${arg#aleph.code=}" ;;
    aleph.data=*) data="\${arg#aleph.data=}" ;;
  esac
done

ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 1000 ]; do usleep 20000; n=$((n+1)); done
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  [ -n "$ip" ] && ip addr add "$ip" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
else
  say "no network device (eth0)"
fi
[ -n "$dns" ] && echo "nameserver $dns" > /etc/resolv.conf

wait_dev() { n=0; while [ ! -e "$1" ] && [ $n -lt 1000 ]; do usleep 20000; n=$((n+1)); done; }
if [ -n "$code" ]; then wait_dev "$code"; mount -o ro "$code" /app || say "cannot mount code volume $code"; fi
if [ -n "$data" ]; then mkdir -p /data; wait_dev "$data"; mount "$data" /data || say "cannot mount data volume $data"; fi

# Shutdown requests reach PID 1 as SIGINT: Ctrl-Alt-Del (Firecracker SendCtrlAltDel)
# from the kernel, the ACPI power button (QMP system_powerdown) through acpid.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\nkill -INT 1\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080
# The power button's input device appears asynchronously; acpid only scans at start.
( wait_dev /dev/input/event0; exec acpid -f -d -c /etc/acpi >/dev/null 2>&1 ) &

[ -f /etc/aleph/env ] && . /etc/aleph/env
entry=/app/start
[ -f /etc/aleph/entry ] && entry="$(cat /etc/aleph/entry)"
cd /app 2>/dev/null || cd /
say "starting $entry (ip \${ip:-none})"
pid=
stop_program() {
  say "shutdown requested, stopping the program"
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  ( sleep 2; say "program did not stop, resetting"; sync; reboot -f ) &
}
trap stop_program INT TERM
"$entry" &
pid=$!
status=0
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
wait "$pid" 2>/dev/null; last=$?; [ "$last" -ne 127 ] && status=$last
say "program exited with status $status"
sync
reboot -f
`;

/** Kernel modules the init loads, in dependency order (virtio, network, block, power button). */
export const GUEST_MODULES = [
  'virtio',
  'virtio_ring',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_mmio',
  'failover',
  'net_failover',
  'virtio_net',
  'virtio_blk',
  'evdev',
  'button',
];
