// The config of a node that runs programs from a stand-in Aleph API under qemu (TCG),
// shared by the VM end-to-end suites. Cache, volumes and VM folders live in `shared`, so
// they survive node restarts; certificates and the status socket live in `nodeDir`.

import { join } from 'node:path';

export interface QemuAlephNode {
  nodeDir: string;
  shared: string;
  kernel: string;
  initramfs: string;
  apiUrl: string;
  redis: string;
  /** Extra lines appended after [programs] (e.g. 'subscribe = false', a [node] table). */
  extra?: string[];
}

export function qemuAlephConfig(o: QemuAlephNode): string {
  return [
    '[server]', 'domain = "edge.test"', 'https_listen = ["127.0.0.1:8443"]', 'http_listen = []',
    `status_socket = "${join(o.nodeDir, 'status.sock')}"`, 'drain_timeout = "5s"',
    '[tls]', 'mode = "internal"', `storage = "${join(o.nodeDir, 'certs')}"`,
    '[orchestrator]', 'driver = "qemu"', 'idle_timeout = "10m"', 'boot_timeout = "150s"', 'stop_grace = "15s"',
    '[drivers.qemu]', `kernel = "${o.kernel}"`, `initramfs = "${o.initramfs}"`, 'accel = "tcg"', `run_dir = "${join(o.shared, 'vms')}"`,
    '[programs]', 'source = "aleph"', `aleph_api = "${o.apiUrl}"`, `cache_dir = "${join(o.shared, 'cache')}"`,
    `volumes_dir = "${join(o.shared, 'volumes')}"`, 'download_retries = 1', 'download_timeout = "60s"',
    ...(o.extra ?? []),
    '[guest_api]', `redis = "${o.redis}"`,
  ].join('\n') + '\n';
}
