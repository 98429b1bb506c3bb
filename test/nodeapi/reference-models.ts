// The reference's pydantic models of GET /about/usage/system, written as a checker:
// aleph-vm's src/aleph/vm/orchestrator/resources.py (MachineUsage and its parts) and
// aleph-message's CpuProperties and aleph-vm's GpuDevice (both `extra="forbid"`). A
// client that parses our answer into those models gets what this checker accepts.
// It is stricter than pydantic's lax mode in one way only: ints must be JSON integers
// (pydantic would also take 1.0 or "1"), so an answer it accepts parses there too.

type Check = (value: unknown, where: string, errors: string[]) => void;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const int: Check = (v, where, errors) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) errors.push(`${where}: int expected, got ${JSON.stringify(v)}`);
};
const float: Check = (v, where, errors) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) errors.push(`${where}: float expected, got ${JSON.stringify(v)}`);
};
const bool: Check = (v, where, errors) => {
  if (typeof v !== 'boolean') errors.push(`${where}: bool expected, got ${JSON.stringify(v)}`);
};
const str: Check = (v, where, errors) => {
  if (typeof v !== 'string') errors.push(`${where}: str expected, got ${JSON.stringify(v)}`);
};
// pydantic's datetime from a JSON string: RFC 3339 date-time (a zone is optional for it).
const datetime: Check = (v, where, errors) => {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?$/.test(v) || Number.isNaN(Date.parse(v))) {
    errors.push(`${where}: datetime expected, got ${JSON.stringify(v)}`);
  }
};
const literal = (...allowed: unknown[]): Check => (v, where, errors) => {
  if (!allowed.includes(v)) errors.push(`${where}: one of ${JSON.stringify(allowed)} expected, got ${JSON.stringify(v)}`);
};
const optional = (check: Check): Check => (v, where, errors) => {
  if (v !== null && v !== undefined) check(v, where, errors);
};
const list = (item: Check): Check => (v, where, errors) => {
  if (!Array.isArray(v)) {
    errors.push(`${where}: list expected, got ${JSON.stringify(v)}`);
    return;
  }
  v.forEach((x, i) => item(x, `${where}[${i}]`, errors));
};

interface Field { check: Check; required: boolean }
const req = (check: Check): Field => ({ check, required: true });
const opt = (check: Check): Field => ({ check: optional(check), required: false });

/** A BaseModel: required fields present, each checked; `forbid` refuses unknown fields (extra="forbid"). */
const model = (fields: Record<string, Field>, forbid = false): Check => (v, where, errors) => {
  if (!isObject(v)) {
    errors.push(`${where}: object expected, got ${JSON.stringify(v)}`);
    return;
  }
  for (const [name, field] of Object.entries(fields)) {
    if (!(name in v)) {
      if (field.required) errors.push(`${where}.${name}: field required`);
      continue;
    }
    field.check(v[name], `${where}.${name}`, errors);
  }
  if (forbid) for (const name of Object.keys(v)) if (!(name in fields)) errors.push(`${where}.${name}: extra field not permitted`);
};

// aleph_message.models.execution.environment.CpuProperties
const CpuProperties = model({
  architecture: opt(literal('x86_64', 'arm64')),
  vendor: opt(str), // Literal["AuthenticAMD", "GenuineIntel"] | str
  features: opt(list(str)),
}, true);

// aleph.vm.resources.GpuDevice
const GpuDevice = model({
  vendor: req(str),
  model: opt(str),
  device_name: req(str),
  device_class: req(literal('0300', '0302')),
  pci_host: req(str),
  device_id: req(str),
  compatible: { check: bool, required: false },
}, true);

/** aleph.vm.orchestrator.resources.MachineUsage */
export const MachineUsage = model({
  cpu: req(model({
    count: req(int),
    load_average: req(model({ load1: req(float), load5: req(float), load15: req(float) })),
    core_frequencies: req(model({ min: req(float), max: req(float) })),
  })),
  mem: req(model({ total_kB: req(int), available_kB: req(int) })),
  disk: req(model({ total_kB: req(int), available_kB: req(int) })),
  period: req(model({ start_timestamp: req(datetime), duration_seconds: req(float) })),
  properties: req(model({ cpu: req(CpuProperties) })),
  gpu: req(model({ devices: opt(list(GpuDevice)), available_devices: opt(list(GpuDevice)) })),
  active: { check: bool, required: false },
});

/** Every way `value` fails to parse into `check`'s model (empty: it parses). */
export function violations(check: Check, value: unknown): string[] {
  const errors: string[] = [];
  check(value, '$', errors);
  return errors;
}
