import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestNode, type TestNode, type TestNodeOptions } from '../helpers/node.js';

export interface AlephNodeOptions {
  api: string;
  /** Shared between node starts to test the cache; default a fresh folder. */
  cacheDir?: string;
  /** Extra lines under [programs]. */
  programs?: string[];
  orchestrator?: string[];
  allowProcess?: boolean;
  /** server.workers; default 1. */
  workers?: number;
  /** Keep the cache folder on close (to start another node on it). */
  keepCache?: boolean;
  /** More TOML after the [programs] table (e.g. [drivers.process]). */
  extra?: string;
  /** The node's folder (state, certificates), kept on close; default a fresh one removed on close. */
  dir?: string;
}

/** A full node with programs.source = "aleph" against a stand-in API, process driver under bubblewrap. */
export async function startAlephNode(options: AlephNodeOptions): Promise<TestNode & { cacheDir: string }> {
  // 'aleph-edge-test-' in the path: the suite's orphan check looks for it in command lines.
  const cacheDir = options.cacheDir ?? (await mkdtemp(path.join(os.tmpdir(), 'aleph-edge-test-cache-')));
  const lines = [
    '[programs]',
    'source = "aleph"',
    `aleph_api = "${options.api}"`,
    `cache_dir = "${cacheDir}"`,
    `volumes_dir = "${path.join(cacheDir, 'volumes')}"`,
    `allow_process_for_network = ${options.allowProcess ?? true}`,
    'download_retries = 1',
    'download_timeout = "5s"',
    ...(options.programs ?? []),
  ];
  const node: TestNodeOptions = { programs: [], orchestrator: ['boot_timeout = "10s"', ...(options.orchestrator ?? [])], extra: [...lines, options.extra ?? ''].join('\n'), workers: options.workers, dir: options.dir };
  const started = await startTestNode(node);
  const close = started.close;
  started.close = async () => {
    await close();
    if (!options.keepCache) await rm(cacheDir, { recursive: true, force: true });
  };
  return Object.assign(started, { cacheDir });
}
