// Limits that Firecracker 1.16's API enforces, shared by the config checks (so a
// bad value is a file:line error at check-config) and the driver (for programs
// that arrive at run time, e.g. from Aleph messages).

/** machine-config vcpu_count: 1..32 (MAX_SUPPORTED_VCPUS). */
export const FIRECRACKER_MAX_VCPUS = 32;

/**
 * The guest command line buffer is 2048 bytes including its NUL terminator, so the
 * final command line (our boot_args plus what Firecracker appends) holds 2047.
 */
export const FIRECRACKER_CMDLINE_MAX = 2047;

/**
 * What Firecracker appends per virtio-mmio device on x86_64
 * (" virtio_mmio.device=4K@0xc0001000:5", at most 37 bytes with larger IRQ and
 * address numbers): boot_args must leave this room for every device.
 */
export const FIRECRACKER_BYTES_PER_DEVICE = 40;

/** Devices a VM may have: the network interface, the vsock and this many drives. */
export const FIRECRACKER_MAX_DRIVES = 16;

/**
 * The longest boot_args our driver writes before any operator extra: the fixed
 * part, the guest address, gateway, IPv6 address and gateway and code drive at their longest. Kept in step with
 * firecrackerBootArgs() (a test checks it).
 */
export const FIRECRACKER_BASE_BOOT_ARGS_MAX = (
  'console=ttyS0 reboot=k panic=1 pci=off quiet i8042.noaux i8042.nomux i8042.dumbkbd aleph.ip=255.255.255.255/32 aleph.gw=255.255.255.255 ' +
  'aleph.ip6=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/124 aleph.gw6=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff aleph.code=/dev/vdp'
).length;

/** Bytes left for `drivers.firecracker.extra_boot_args` (plus the space before it). */
export function firecrackerExtraBootArgsRoom(): number {
  return FIRECRACKER_CMDLINE_MAX - FIRECRACKER_BASE_BOOT_ARGS_MAX - (FIRECRACKER_MAX_DRIVES + 2) * FIRECRACKER_BYTES_PER_DEVICE - 1;
}

/**
 * Kernel arguments an operator must not add: Firecracker appends root= and
 * virtio_mmio.device= itself, the init is ours, and aleph.* are the guest contract.
 */
export function forbiddenBootArg(arg: string): string | undefined {
  if (/^(root|rootfstype|rootflags|init|rdinit|virtio_mmio\.device)=/.test(arg)) return `${arg.split('=')[0]}= is set by Firecracker or by the guest boot layout`;
  if (arg.startsWith('aleph.')) return 'aleph.* arguments are set by the driver';
  return undefined;
}
