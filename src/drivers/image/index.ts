export { buildGuestImage, type GuestImage, type GuestImageOptions } from './build.js';
export { DEFAULT_KERNEL_PACKAGE, DEFAULT_VM_CACHE, ensureKernel, extractVmlinux, findCachedKernel, kvmUsable, type KernelFiles } from './kernel.js';
export { buildBaseInitramfs, buildProgramArchive, envScript, DEFAULT_BUSYBOX } from './initramfs.js';
export { encodeCpio, treeEntries, writeConcatenated, type CpioEntry } from './cpio.js';
export { GUEST_DIR, GUEST_INIT, GUEST_MODULES } from './guest-init.js';
export { buildRuntime, ensureRuntime, sha256File, RUNTIME_PACKAGES, type RuntimeImage, type RuntimeOptions } from './runtime.js';
export { buildGuestAgent, AGENT_SOURCE } from './agent.js';
