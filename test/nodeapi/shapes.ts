// Field-by-field shape checks of the node API answers (the monitor reads these names).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array' | 'null' | 'string|null' | 'number|null' | 'boolean|null' | 'object|null' | 'array|null' | 'iso|null';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Asserts `value` has exactly these fields (nested specs are objects) with these types. */
export function assertShape(value: unknown, spec: Record<string, unknown>, where = '$'): void {
  assert.equal(kindOf(value), 'object', `${where} is an object`);
  const object = value as Record<string, unknown>;
  assert.deepEqual(Object.keys(object).sort(), Object.keys(spec).sort(), `${where} has exactly the fields ${Object.keys(spec).join(', ')}`);
  for (const [key, expected] of Object.entries(spec)) {
    const actual = object[key];
    const path = `${where}.${key}`;
    if (typeof expected === 'object' && expected !== null) {
      assertShape(actual, expected as Record<string, unknown>, path);
      continue;
    }
    const kind = expected as Kind;
    if (kind === 'iso|null') {
      assert.ok(actual === null || (typeof actual === 'string' && ISO.test(actual)), `${path} is an ISO 8601 time or null, got ${JSON.stringify(actual)}`);
    } else if (kind.includes('|')) {
      assert.ok(kind.split('|').includes(kindOf(actual)), `${path} is ${kind}, got ${kindOf(actual)}`);
    } else {
      assert.equal(kindOf(actual), kind, `${path} is ${kind}`);
    }
  }
}

export const USAGE_SYSTEM = {
  cpu: { count: 'number', load_average: { load1: 'number', load5: 'number', load15: 'number' }, core_frequencies: { min: 'number', max: 'number' } },
  mem: { total_kB: 'number', available_kB: 'number' },
  disk: { total_kB: 'number', available_kB: 'number' },
  period: { start_timestamp: 'string', duration_seconds: 'number' },
  properties: { cpu: { architecture: 'string', vendor: 'string|null', features: 'array' } },
  gpu: { devices: 'array', available_devices: 'array' },
  active: 'boolean',
};

export const STATUS_CONFIG = {
  DOMAIN_NAME: 'string', node_hash: 'string|null', version: 'string',
  references: { API_SERVER: 'string', CHECK_FASTAPI_VM_ID: 'string', CONNECTOR_URL: 'string|null' },
  security: { USE_JAILER: 'boolean|null', PRINT_SYSTEM_LOGS: 'boolean|null', WATCH_FOR_UPDATES: 'boolean', ALLOW_VM_NETWORKING: 'boolean|null', USE_DEVELOPER_SSH_KEYS: 'boolean' },
  networking: { IPV6_ADDRESS_POOL: 'string|null', IPV6_ALLOCATION_POLICY: 'string|null', IPV6_SUBNET_PREFIX: 'number|null', IPV6_FORWARDING_ENABLED: 'boolean|null', USE_NDP_PROXY: 'boolean|null' },
  debug: { SENTRY_DSN_CONFIGURED: 'boolean', DEBUG_ASYNCIO: 'boolean|null', EXECUTION_LOG_ENABLED: 'boolean|null' },
  payment: { PAYMENT_RECEIVER_ADDRESS: 'string|null', AVAILABLE_PAYMENTS: 'object|null', PAYMENT_MONITOR_INTERVAL: 'number|null' },
  computing: { ENABLE_QEMU_SUPPORT: 'boolean', INSTANCE_DEFAULT_HYPERVISOR: 'string|null', ENABLE_CONFIDENTIAL_COMPUTING: 'boolean', ENABLE_GPU_SUPPORT: 'boolean' },
  orchestrator: { driver: 'string', max_vms: 'number', memory_budget_mib: 'number' },
};

/**
 * What the reference's /about/usage/system would say on this host, computed the way it
 * does, by psutil itself (Debian's python3-psutil; /usr/bin/python3, not a pyenv one).
 */
export async function psutilUsage(procfs = '/proc'): Promise<{ total_kB: number; count: number; frequencies: { min: number; max: number } }> {
  const script = [
    'import json, math, sys, psutil',
    'psutil.PROCFS_PATH = sys.argv[1]',
    'f = psutil.cpu_freq()',
    'print(json.dumps({"total_kB": math.ceil(psutil.virtual_memory().total / 1000), "count": psutil.cpu_count(),',
    '  "frequencies": {"min": f.min or f.current, "max": f.max or f.current}}))',
  ].join('\n');
  const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', script, procfs]);
  return JSON.parse(stdout) as { total_kB: number; count: number; frequencies: { min: number; max: number } };
}

export const CAPABILITY = {
  cpu: { architecture: 'string', vendor: 'string|null', model: 'string|null', frequency: 'number|null', count: 'number', features: 'array' },
  memory: { size: 'number|null', units: 'string|null', type: 'string|null', clock: 'number|null' },
};

export const EXECUTION_V1 = { networking: { ipv4: 'string|null', ipv6: 'string|null' }, vm_type: 'string', awaiting_confidential_init: 'boolean' };

export const EXECUTION_V2 = {
  networking: { ipv4_network: 'string|null', host_ipv4: 'string|null', ipv6_network: 'string|null', ipv6_ip: 'string|null', ipv4_ip: 'string|null', mapped_ports: 'object' },
  status: {
    defined_at: 'iso|null', preparing_at: 'iso|null', prepared_at: 'iso|null', starting_at: 'iso|null',
    started_at: 'iso|null', stopping_at: 'iso|null', stopped_at: 'iso|null',
  },
  running: 'boolean',
  awaiting_confidential_init: 'boolean',
  vm_type: 'string',
};

export const EXECUTION_RECORD = {
  uuid: 'string', vm_hash: 'string', vm_id: 'number|null',
  time_defined: 'iso|null', time_prepared: 'iso|null', time_started: 'iso|null', time_stopping: 'iso|null',
  cpu_time_user: 'number|null', cpu_time_system: 'number|null',
  io_read_count: 'number|null', io_write_count: 'number|null', io_read_bytes: 'number|null', io_write_bytes: 'number|null',
  vcpus: 'number', memory: 'number', network_tap: 'string|null', message: 'object|null', original_message: 'object|null',
  persistent: 'boolean|null', gpus: 'array|null', mapped_ports: 'object|null',
};

const FAMILY = { egress: 'boolean', dns: 'boolean', domain: 'boolean', http: 'boolean' };
export const HOST_CHECK = { ipv4: FAMILY, ipv6: FAMILY };

export const FASTAPI_NAMES = ['index', 'environ', 'messages', 'dns', 'ipv4', 'internet', 'cache', 'persistent_storage', 'error_handling', 'get_a_message', 'lifespan'];
export const FASTAPI = Object.fromEntries(FASTAPI_NAMES.map((name) => [name, 'boolean']));
export const FASTAPI_RETRO = Object.fromEntries(FASTAPI_NAMES.filter((n) => n !== 'get_a_message' && n !== 'lifespan').map((name) => [name, 'boolean']));
