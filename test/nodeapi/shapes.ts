// Field-by-field shape checks of the node API answers (the monitor reads these names).
import assert from 'node:assert/strict';

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array' | 'null' | 'string|null' | 'number|null' | 'iso|null';

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
  cpu: { count: 'number', load_average: { load1: 'number', load5: 'number', load15: 'number' }, core_frequencies: { min: 'number|null', max: 'number|null' } },
  mem: { total_kB: 'number', available_kB: 'number' },
  disk: { total_kB: 'number', available_kB: 'number' },
  period: { start_timestamp: 'string', duration_seconds: 'number' },
  properties: { cpu: { architecture: 'string', vendor: 'string|null', features: 'array' } },
  gpu: { devices: 'array', available_devices: 'array' },
  active: 'boolean',
};

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

const FAMILY = { egress: 'boolean', dns: 'boolean', domain: 'boolean', http: 'boolean' };
export const HOST_CHECK = { ipv4: FAMILY, ipv6: FAMILY };

export const FASTAPI_NAMES = ['index', 'environ', 'messages', 'dns', 'ipv4', 'internet', 'cache', 'persistent_storage', 'error_handling', 'get_a_message', 'lifespan'];
export const FASTAPI = Object.fromEntries(FASTAPI_NAMES.map((name) => [name, 'boolean']));
export const FASTAPI_RETRO = Object.fromEntries(FASTAPI_NAMES.filter((n) => n !== 'get_a_message' && n !== 'lifespan').map((name) => [name, 'boolean']));
