// The qemu command line for one VM, as a pure function (unit-tested on its own).

import { CONTROL_PORT_NAME } from './control.js';

export type QemuMachine = 'microvm' | 'q35';
export type QemuAccel = 'kvm' | 'tcg';

export interface QemuVmSpec {
  machine: QemuMachine;
  accel: QemuAccel;
  memoryMib: number;
  vcpus: number;
  kernel: string;
  initrd: string;
  /** Extra kernel arguments (network, code drive). */
  kernelArgs: string[];
  qmpSocket: string;
  net:
    // host 127.0.0.1:hostPort -> guest :8080; guestApiCommand: what a guest connection to
    // USER_NET.guestApi:80 is handed to (qemu spawns it per connection, stdin/stdout = the connection).
    | { mode: 'user'; hostPort: number; internet: boolean; guestApiCommand?: string[] }
    | { mode: 'tap'; tap: string }
    // A warm-pool VM: its NIC is hot-plugged with its program (src/drivers/qemu/pool.ts).
    | { mode: 'none' };
  /** Empty PCIe root ports (q35) for devices hot-plugged later (a warm-pool VM's program). */
  hotplugPorts?: number;
  /** virtio-blk disks in guest order (vda, vdb, ...), from src/drivers/vm/layout.ts; the id is also the serial. */
  drives?: Array<{ id: string; path: string; readOnly: boolean }>;
  /** The guest control channel (virtio-serial port org.aleph.ctl) as a unix socket on the host: VMs that may be snapshotted have one. */
  control?: string;
  /** Start from this saved state (a migration stream) instead of booting: the device set must be the one it was saved with. */
  incoming?: string;
}

/** Hot-plug root ports are named <this><n> (the bus of a device_add). */
export const HOTPLUG_PORT = 'hp';

/** Guest address under qemu user-mode networking (slirp defaults). */
export const USER_NET = { guest: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3', guestApi: '10.0.2.100' } as const;

export function qemuArgs(spec: QemuVmSpec): string[] {
  const mmio = spec.machine === 'microvm';
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot', // the guest resets when its program ends: qemu exits
    '-M', mmio ? 'microvm,x-option-roms=off,rtc=on' : 'q35',
    '-accel', spec.accel,
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', String(spec.memoryMib),
    '-smp', String(spec.vcpus),
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', ['console=ttyS0', 'quiet', 'panic=-1', 'reboot=t', ...spec.kernelArgs].join(' '),
    '-qmp', `unix:${spec.qmpSocket},server=on,wait=off`,
  ];
  const device = (pci: string, mmioName: string) => (mmio ? mmioName : pci);
  if (spec.net.mode === 'user') {
    // restrict=on: no route out of the guest (hostfwd still works) unless the program may use the internet.
    let netdev = `user,id=n0,restrict=${spec.net.internet ? 'off' : 'on'},hostfwd=tcp:127.0.0.1:${spec.net.hostPort}-:8080`;
    // guestfwd is allowed under restrict=on: the guest reaches this one address and nothing else.
    if (spec.net.guestApiCommand) netdev += `,guestfwd=tcp:${USER_NET.guestApi}:80-cmd:${commandLine(spec.net.guestApiCommand)}`;
    args.push('-netdev', netdev);
  } else if (spec.net.mode === 'tap') {
    args.push('-netdev', `tap,id=n0,ifname=${spec.net.tap},script=no,downscript=no`);
  }
  if (spec.net.mode !== 'none') args.push('-device', `${device('virtio-net-pci', 'virtio-net-device')},netdev=n0`);
  for (const drive of spec.drives ?? []) {
    // qemu's option syntax: a ',' in a value is written ',,'.
    const file = drive.path.replaceAll(',', ',,');
    args.push('-drive', `file=${file},if=none,id=${drive.id},format=raw,readonly=${drive.readOnly ? 'on' : 'off'}`);
    args.push('-device', `${device('virtio-blk-pci', 'virtio-blk-device')},drive=${drive.id},serial=${drive.id}`);
  }
  if (spec.control) {
    args.push('-chardev', `socket,id=actl,path=${spec.control.replaceAll(',', ',,')},server=on,wait=off`);
    args.push('-device', device('virtio-serial-pci', 'virtio-serial-device'));
    args.push('-device', `virtserialport,chardev=actl,name=${CONTROL_PORT_NAME}`);
  }
  for (let i = 0; i < (spec.hotplugPorts ?? 0); i++) args.push('-device', `pcie-root-port,id=${HOTPLUG_PORT}${i},chassis=${i + 1}`);
  // exec: runs through /bin/sh: only plain paths (checked by the caller with plainPath).
  if (spec.incoming) args.push('-incoming', `exec:cat ${plainPath(spec.incoming)}`);
  return args;
}

/** `path` when it needs no quoting in a shell word, else an error. */
export function plainPath(path: string): string {
  if (!/^\/[\w./@+-]+$/.test(path)) throw new Error(`${JSON.stringify(path)} needs quoting`);
  return path;
}

/**
 * A command for qemu's `guestfwd=...-cmd:` (libslirp splits it like a shell would and
 * runs it without a shell). Only plain words: nothing to quote and no ',' (qemu's
 * option separator). ':' is plain there: qemu takes everything after `cmd:` as the command.
 */
export function commandLine(argv: string[]): string {
  for (const arg of argv) {
    if (!/^[\w./@=+:-]+$/.test(arg)) throw new Error(`guestfwd command argument ${JSON.stringify(arg)} needs quoting`);
  }
  return argv.join(' ');
}
