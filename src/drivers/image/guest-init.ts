// The guest's /init: guest/init/init.sh (busybox sh, PID 1), read from the package
// and put into the base initramfs. The guest contract, in one place (details in
// docs/guest.md):
//   kernel arguments  aleph.ip=<addr>/<prefix>  aleph.gw=<addr>  aleph.dns=<addr>
//                     aleph.ip6=<addr>/124  aleph.gw6=<addr>  (the VM's IPv6, src/drivers/net/ipv6.ts)
//                     aleph.pool=1: a warm-pool VM, which waits for a hot-plugged drive with serial
//                     "program" (the per-program archive), unpacks it over / and boots on (docs/warm-pool.md)
//                     aleph.preload=<module,...>: with aleph.pool=1 and a runtime drive, a Python on the
//                     runtime imports these while the VM waits and becomes the program when it is
//                     `python3 -m aleph_asgi` and sees nothing a fresh start would not (guest/aleph_preload)
//                     (no root=: the kernel boots our initramfs; no drive is the root device)
//   drives            virtio-blk, in the order of src/drivers/vm/layout.ts (vda, vdb, ...),
//                     each named in /etc/aleph/mounts; qemu also sets the drive id as serial
//   /etc/aleph/mounts "<id> <device> <mount point> <fstype> <mode>" lines, runtime first:
//                     root     the runtime squashfs, read-only, under a tmpfs overlay that
//                              becomes the program's / (entered with chroot; PID 1 stays here)
//                     ro       read-only (code at /opt/code, immutable volumes)
//                     rw       read-write ext4 (persistent volumes, ephemeral ones made per boot)
//                     overlay  read-only image under a tmpfs overlay (the message's data)
//   /etc/aleph/env    shell `export NAME='value'` lines, sourced before the program starts
//   /etc/aleph/entry  the program's argv, one argument per line (default /app/start); it must
//                     serve HTTP on port 8080 (asgi: python3 -m aleph_asgi ... --port 8080)
//   /etc/aleph/cwd    its working directory (default /app)
//   /etc/aleph/hostname      the hostname (the base32 label of the program hash)
//   /etc/aleph/stop-timeout  seconds between SIGTERM and SIGKILL at shutdown (default 2)
//   /opt/aleph-guest  guest/'s Python packages (the ASGI server), bind-mounted read-only
//   /bin/aleph-agent  (optional) answers the node on the virtio-serial port org.aleph.ctl (qemu) or vsock port 1024 (Firecracker): after a
//                     restore from a snapshot, the clock and a kernel reseed (docs/snapshots.md)
//   readiness         the host decides: the first HTTP answer on :8080 means ready
//   shutdown          SIGINT to PID 1 (Ctrl-Alt-Del, or the ACPI power button via acpid) -> SIGTERM
//                     to the program, SIGKILL after stop-timeout; then the volumes are unmounted
//                     and the VM resets (qemu runs with -no-reboot and Firecracker exits on reset,
//                     so the VMM exits too); when the program exits by itself the same happens
// Console lines prefixed "aleph-guest:" are the init's own.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** guest/ in the repository (and in the npm package), from dist/src/drivers/image/ at run time. */
export const GUEST_DIR = fileURLToPath(new URL('../../../../guest/', import.meta.url));

export const GUEST_INIT = readFileSync(`${GUEST_DIR}init/init.sh`, 'utf8');

/**
 * Kernel modules the init loads, in dependency order (virtio, network, block, power
 * button, the filesystems of the program's drives). Names absent from a kernel are
 * built in there (the Debian cloud kernel has ext4 built in, squashfs, overlay and
 * loop as modules; loop devices are not needed, images are drives).
 */
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
  'virtio_console', // the control channel of VMs that may be snapshotted (guest/agent), under qemu
  'vsock', // ... and under Firecracker, its vsock
  'vmw_vsock_virtio_transport_common',
  'vmw_vsock_virtio_transport',
  'evdev',
  'button',
  'squashfs',
  'overlay',
  'ext4', // with its depends= (jbd2, mbcache, crc16) where it is a module
];
