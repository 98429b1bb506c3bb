// Instances (MachineLaunch) under qemu: the VM boots its own disk (SeaBIOS, then the
// image's bootloader and kernel), a qcow2 overlay of the instance's own over the
// parent image, with a cloud-init NoCloud drive the node makes at every boot. The
// serial console is the instance's log; QMP asks for an ACPI shutdown on stop and
// says when the VM runs (an instance is ready then: what it serves is its owner's
// business). The message's volumes follow as more disks (../machine/volumes.ts).
// User-mode networking forwards the owner's ports from loopback host ports
// (hostfwd), tap networking puts it on the node's address pool.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/index.js';
import type { MachineLaunch, Program } from '../../programs/index.js';
import { allocatePorts, ensureMachineDisk, machineDrives, machineTap, MACHINE_STOP_GRACE_MS, volumeMounts, writeCloudInitDrive, type MachineDrive, type MachineNetwork, type MappedPorts } from '../machine/index.js';
import { networkOf, type Lease, type NetworkPool } from '../net/index.js';
import { LOOPBACK_HOST, pickFreePort } from '../host/index.js';
import { DriverStartError, type Endpoint, type Instance, type Slot } from '../types.js';
import { USER_NET, type QemuAccel } from './args.js';
import { QmpClient, qmpCommand } from './qmp.js';
import { prepareDisks, safeName, VmProcess, type Cleanup } from '../vm/index.js';

export { MACHINE_NAMESERVERS, MACHINE_STOP_GRACE_MS } from '../machine/index.js';
/** How long qemu has to open its QMP socket and report the VM running. */
const RUNNING_WAIT_MS = 20_000;

export interface MachineSpec {
  accel: QemuAccel;
  memoryMib: number;
  vcpus: number;
  disk: string;
  cloudInit: string;
  qmpSocket: string;
  /** The instance's volumes, attached after the cloud-init drive in this order. */
  volumes: MachineDrive[];
  net:
    | { mode: 'user'; internet: boolean; httpPort: number; forwards: MappedPorts; bind: string }
    | { mode: 'tap'; tap: string };
}

/** The qemu command line of an instance, as a pure function. */
export function machineArgs(spec: MachineSpec): string[] {
  const file = (path: string) => path.replaceAll(',', ',,');
  const args = [
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-serial', 'stdio',
    '-M', 'q35',
    '-accel', spec.accel,
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', String(spec.memoryMib),
    '-smp', String(spec.vcpus),
    '-drive', `file=${file(spec.disk)},if=none,id=rootfs,format=qcow2,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=rootfs,bootindex=0',
    '-drive', `file=${file(spec.cloudInit)},if=none,id=cidata,format=raw,readonly=on`,
    '-device', 'virtio-blk-pci,drive=cidata',
  ];
  for (const v of spec.volumes) {
    // format=raw: qemu never probes what an owner's blob claims to be.
    args.push('-drive', `file=${file(v.path)},if=none,id=${v.id},format=raw,${v.readOnly ? 'readonly=on' : 'discard=unmap'}`);
    args.push('-device', `virtio-blk-pci,drive=${v.id},serial=${v.id}`);
  }
  args.push('-qmp', `unix:${file(spec.qmpSocket)},server=on,wait=off`);
  if (spec.net.mode === 'user') {
    // restrict=on: no route out (the forwards still work) unless the instance may use the internet.
    const forwards = [`hostfwd=tcp:${LOOPBACK_HOST}:${spec.net.httpPort}-:80`];
    for (const [port, mapped] of Object.entries(spec.net.forwards)) {
      if (mapped.tcp) forwards.push(`hostfwd=tcp:${spec.net.bind}:${mapped.host}-:${port}`);
      if (mapped.udp) forwards.push(`hostfwd=udp:${spec.net.bind}:${mapped.host}-:${port}`);
    }
    args.push('-netdev', [`user,id=n0,restrict=${spec.net.internet ? 'off' : 'on'}`, ...forwards].join(','));
  } else {
    args.push('-netdev', `tap,id=n0,ifname=${spec.net.tap},script=no,downscript=no`);
  }
  // rombar=0: no iPXE option ROM; the VM boots from its disk.
  args.push('-device', 'virtio-net-pci,netdev=n0,rombar=0');
  return args;
}

export interface MachineDriverContext {
  binary: string;
  runDir: string;
  accel: QemuAccel;
  stopGraceMs: number;
  pool?: NetworkPool;
  log: Logger;
  console: Logger;
}

export async function startMachine(ctx: MachineDriverContext, program: Program, launch: MachineLaunch, slot: Slot): Promise<Instance> {
  const cleanups: Cleanup[] = [];
  const undo = async () => {
    for (const step of cleanups.splice(0).reverse()) await Promise.resolve(step()).catch(() => {});
  };
  try {
    const { created } = await ensureMachineDisk(launch);
    const dir = await mkdtemp(join(ctx.runDir, `${safeName(slot.executionId)}-`));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const volumes = machineDrives(launch.volumes, dir);
    // Held until qemu exits: a second start of the instance waits for the first to let go of its persistent volumes.
    cleanups.push(await prepareDisks({ drives: [], files: {}, codeDir: undefined, disks: volumes.disks }));

    let net: MachineSpec['net'];
    let network: MachineNetwork;
    let endpoint: Endpoint;
    let mappedPorts: MappedPorts = {};
    let lease: Lease | undefined;
    if (ctx.pool) {
      const tap = await machineTap(ctx.pool, program, launch, slot, (step) => cleanups.push(step));
      ({ network, endpoint, mappedPorts, lease } = tap);
      net = { mode: 'tap', tap: tap.lease.tap };
    } else {
      mappedPorts = await allocatePorts(launch.stateDir, launch.ports, LOOPBACK_HOST);
      const httpPort = await pickFreePort(LOOPBACK_HOST);
      net = { mode: 'user', internet: launch.internet, httpPort, forwards: mappedPorts, bind: LOOPBACK_HOST };
      network = { ipv4: USER_NET.guest, gateway4: USER_NET.gateway, nameservers: [USER_NET.dns] };
      endpoint = { kind: 'tcp', host: LOOPBACK_HOST, port: httpPort };
    }
    const cloudInit = join(dir, 'cidata.iso');
    await writeCloudInitDrive(cloudInit, { hostname: launch.hostname, authorizedKeys: launch.authorizedKeys, internet: launch.internet, network, mounts: volumeMounts(volumes.drives) });

    const qmpSocket = join(dir, 'qmp.sock');
    const args = machineArgs({ accel: ctx.accel, memoryMib: program.memoryMib, vcpus: program.vcpus, disk: launch.disk, cloudInit, qmpSocket, volumes: volumes.drives, net });
    const vm = await VmProcess.spawn(ctx.binary, args, {
      endpoint,
      stopGraceMs: Math.max(ctx.stopGraceMs, MACHINE_STOP_GRACE_MS),
      log: ctx.log,
      console: ctx.console,
      hooks: { graceful: qmpCommand(qmpSocket, 'system_powerdown'), forced: qmpCommand(qmpSocket, 'quit') },
      cleanups: cleanups.splice(0),
      output: slot.output, // the serial console: the instance's log (owner's /control/machine/<hash>/logs)
    });
    vm.readyWhenStarted = true;
    vm.mappedPorts = mappedPorts;
    // The executions list's ipv4/ipv6 (the address the network's monitor pings).
    if (lease) vm.network = networkOf(lease);
    if (!(await runningWithin(vm, qmpSocket, RUNNING_WAIT_MS))) {
      await vm.stop();
      throw new DriverStartError('qemu: the instance\'s VM did not start running');
    }
    ctx.log.info('instance vm running', { pid: vm.pid, accel: ctx.accel, memory_mib: program.memoryMib, vcpus: program.vcpus, new_disk: created, ports: Object.entries(mappedPorts).map(([p, m]) => `${m.host}->${p}`).join(' ') });
    return vm;
  } catch (err) {
    await undo();
    if (err instanceof DriverStartError) throw err;
    throw new DriverStartError(`qemu: ${(err as Error).message}`, { cause: err });
  }
}

/** Polls QMP's query-status until the VM runs; false when qemu exits or time runs out. */
async function runningWithin(vm: VmProcess, qmpSocket: string, ms: number): Promise<boolean> {
  let exited = false;
  void vm.exited.then(() => (exited = true));
  const deadline = Date.now() + ms;
  while (!exited && Date.now() < deadline) {
    try {
      const client = await QmpClient.connect(qmpSocket);
      try {
        const status = (await client.execute('query-status')) as { status?: string; running?: boolean };
        if (status.running === true || status.status === 'running') return true;
      } finally {
        client.close();
      }
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return false;
}
