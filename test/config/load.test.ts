import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  checkConfig,
  ConfigError,
  defaultSettings,
  formatIssue,
  loadConfig,
  parseConfig,
  type Settings,
} from '../../src/config/index.js';

const FILE = '/etc/aleph-edge/aleph-edge.toml';
const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const BASE = `[server]
domain = "vm.example.org"
[tls]
mode = "internal"
`;

function parse(text: string): Settings {
  return parseConfig(text, FILE);
}

/** `line:column key: message` for each issue, or [] when the text is valid. */
function issues(text: string): string[] {
  try {
    parseConfig(text, FILE);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.issues.map((issue) => `${issue.line}:${issue.column} ${issue.key}: ${issue.message}`);
  }
}

describe('defaults', () => {
  it('fills every key that is not given', () => {
    const settings = parse(`[server]\ndomain = "vm.example.org"\n[tls]\nemail = "ops@example.org"\n`);
    assert.deepEqual(settings, {
      file: FILE,
      server: {
        domain: 'vm.example.org',
        httpsListen: [
          { host: '0.0.0.0', port: 443 },
          { host: '::', port: 443 },
        ],
        httpListen: [
          { host: '0.0.0.0', port: 80 },
          { host: '::', port: 80 },
        ],
        statusSocket: '/run/aleph-edge/status.sock',
        statusSocketMode: 0o660,
        drainTimeoutMs: 30_000,
        workers: 0,
        protocols: ['h1', 'h2'],
        hsts: 'max-age=31536000',
        limits: {
          maxHeaderBytes: 16 * 1024,
          headersTimeoutMs: 10_000,
          requestTimeoutMs: 0,
          keepAliveTimeoutMs: 5_000,
          maxBodyBytes: 0,
          maxConnections: 0,
          handshakeTimeoutMs: 10_000,
          maxHandshakesPerAddress: 128,
          maxHandshakes: 4096,
          h2MaxConcurrentStreams: 100,
          h2IdleTimeoutMs: 60_000,
          h1MaxPipelinedRequests: 16,
          sendTimeoutMs: 60_000,
        },
      },
      tls: {
        mode: 'acme',
        storage: '/var/lib/aleph-edge/certs',
        email: 'ops@example.org',
        directory: 'https://acme-v02.api.letsencrypt.org/directory',
        directoryCa: '',
        challenges: ['tls-alpn-01', 'http-01'],
        onDemand: true,
        ask: '',
        issueRate: { burst: 5, intervalMs: 60_000 },
        wildcard: { enabled: false, dnsHook: '' },
        files: [],
        cacheSize: 1000,
        eab: null,
      },
      orchestrator: {
        driver: 'process',
        idleTimeoutMs: 60 * 60_000,
        bootTimeoutMs: 20_000,
        requestTimeoutMs: 30_000,
        maxVms: 64,
        memoryBudgetMib: 8192,
        holdQueue: 100,
        stopGraceMs: 5_000,
        prewarm: 0,
      },
      programs: { source: 'local', alephApi: 'https://api2.aleph.im', local: [] },
      routes: [],
      routing: {
        dnsServers: [],
        txtCacheSize: 10_000,
        negativeTtlMs: 60_000,
        maxTtlMs: 3_600_000,
        lookupTimeoutMs: 2_000,
      },
      guestApi: {
        enabled: true,
        redis: 'redis://127.0.0.1:6379',
        socketDir: '/run/aleph-edge/guest-api',
        maxValueBytes: 1024 * 1024,
        maxKeys: 1000,
        keyTtlMs: 7 * 24 * 3_600_000,
        redisTimeoutMs: 2_000,
        apiTimeoutMs: 15_000,
        maxResponseBytes: 16 * 1024 * 1024,
        maxConnections: 32,
        idleTimeoutMs: 60_000,
      },
    });
  });

  it('fills program defaults; cwd is the config directory', () => {
    const settings = parse(`${BASE}[[programs.local]]\nhash = "${HASH_A.toUpperCase()}"\ncommand = ["node", "s.js"]\n`);
    assert.deepEqual(settings.programs.local, [
      {
        hash: HASH_A,
        name: '',
        command: ['node', 's.js'],
        cwd: '/etc/aleph-edge',
        env: {},
        memoryMib: 128,
        vcpus: 1,
        healthPath: '',
        requestTimeoutMs: 0,
      },
    ]);
  });

  it('defaultSettings() matches an empty file apart from the required domain', () => {
    const fromText = parseConfig(`[server]\ndomain = "localhost"\n[tls]\nemail = "a@b.c"\n`, '/x/y.toml');
    assert.deepEqual(defaultSettings('/x'), { ...fromText, file: '', tls: { ...fromText.tls, email: '' } });
  });
});

describe('values', () => {
  it('reads every key with its TOML spelling', () => {
    const settings = parse(`
[server]
domain = "Node.Example.ORG"
https_listen = ["[::1]:8443", "127.0.0.1:9443"]
http_listen = []
status_socket = "/tmp/s.sock"
status_socket_mode = 0o600
drain_timeout = "1m"
[server.limits]
max_header_bytes = "32KiB"
headers_timeout = "3s"
request_timeout = "2m"
keep_alive_timeout = "250ms"
max_body_bytes = 1048576
max_connections = 1000
[tls]
mode = "acme"
email = "ops@example.org"
directory = "https://localhost:14000/dir"
challenges = ["http-01"]
on_demand = false
ask = "http://127.0.0.1:9000/ask"
issue_rate = { burst = 2, interval = "10s" }
wildcard = { enabled = true, dns_hook = "/usr/local/bin/dns-hook" }
cache_size = 50
eab = { kid = "k1", hmac_key = "c2VjcmV0" }
[orchestrator]
driver = "qemu"
idle_timeout = "1h30m"
boot_timeout = "45s"
request_timeout = "0s"
max_vms = 8
memory_budget_mib = 2048
hold_queue = 5
stop_grace = "2s"
prewarm = 1
[programs]
source = "aleph"
aleph_api = "https://api.example.org"
[[routes]]
host = "App.Example.com"
program = "${HASH_B}"
[routing]
dns_servers = ["127.0.0.1:5353", "1.1.1.1", "[::1]:53"]
txt_cache_size = 10
negative_ttl = "5s"
max_ttl = "10m"
lookup_timeout = "500ms"
`);
    assert.equal(settings.server.domain, 'node.example.org');
    assert.deepEqual(settings.server.httpsListen, [
      { host: '::1', port: 8443 },
      { host: '127.0.0.1', port: 9443 },
    ]);
    assert.deepEqual(settings.server.httpListen, []);
    assert.equal(settings.server.statusSocketMode, 0o600);
    assert.equal(settings.server.drainTimeoutMs, 60_000);
    assert.deepEqual(settings.server.limits, {
      maxHeaderBytes: 32768,
      headersTimeoutMs: 3000,
      requestTimeoutMs: 120_000,
      keepAliveTimeoutMs: 250,
      maxBodyBytes: 1048576,
      maxConnections: 1000,
      handshakeTimeoutMs: 10_000,
      maxHandshakesPerAddress: 128,
      maxHandshakes: 4096,
      h2MaxConcurrentStreams: 100,
      h2IdleTimeoutMs: 60_000,
      h1MaxPipelinedRequests: 16,
      sendTimeoutMs: 60_000,
    });
    assert.deepEqual(settings.tls.challenges, ['http-01']);
    assert.equal(settings.tls.onDemand, false);
    assert.deepEqual(settings.tls.issueRate, { burst: 2, intervalMs: 10_000 });
    assert.deepEqual(settings.tls.wildcard, { enabled: true, dnsHook: '/usr/local/bin/dns-hook' });
    assert.equal(settings.tls.cacheSize, 50);
    assert.deepEqual(settings.tls.eab, { kid: 'k1', hmacKey: 'c2VjcmV0' });
    assert.deepEqual(settings.orchestrator, {
      driver: 'qemu',
      idleTimeoutMs: 5_400_000,
      bootTimeoutMs: 45_000,
      requestTimeoutMs: 0,
      maxVms: 8,
      memoryBudgetMib: 2048,
      holdQueue: 5,
      stopGraceMs: 2000,
      prewarm: 1,
    });
    assert.equal(settings.programs.source, 'aleph');
    assert.deepEqual(settings.routes, [{ host: 'app.example.com', program: HASH_B }]);
    assert.deepEqual(settings.routing, {
      dnsServers: ['127.0.0.1:5353', '1.1.1.1', '[::1]:53'],
      txtCacheSize: 10,
      negativeTtlMs: 5000,
      maxTtlMs: 600_000,
      lookupTimeoutMs: 500,
    });
  });

  it('accepts status_socket_mode as an octal string', () => {
    assert.equal(parse(`${BASE.replace('[tls]', 'status_socket_mode = "0640"\n[tls]')}`).server.statusSocketMode, 0o640);
  });

  it('reads program env, name and options', () => {
    const settings = parse(`${BASE}[[programs.local]]
hash = "${HASH_A}"
name = "counter"
command = ["node", "s.js"]
env = { NODE_ENV = "production", GREETING = "hi there" }
memory_mib = 256
vcpus = 2
health_path = "/health"
request_timeout = "90s"
`);
    const [program] = settings.programs.local;
    assert.deepEqual(program?.env, { NODE_ENV: 'production', GREETING: 'hi there' });
    assert.equal(program?.name, 'counter');
    assert.equal(program?.memoryMib, 256);
    assert.equal(program?.vcpus, 2);
    assert.equal(program?.healthPath, '/health');
    assert.equal(program?.requestTimeoutMs, 90_000);
  });
});

describe('relative paths', () => {
  it('resolve against the config file directory', () => {
    const settings = parseConfig(
      `[server]
domain = "localhost"
status_socket = "../run/edge.sock"
[tls]
mode = "files"
storage = "certs"
directory_ca = "pebble.pem"
wildcard = { dns_hook = "hooks/dns.sh" }
[[tls.files]]
hosts = ["Example.org", "*.example.org"]
cert = "tls/example.crt"
key = "/abs/example.key"
[[programs.local]]
hash = "${HASH_A}"
command = ["node", "server.js"]
cwd = "../examples/counter"
`,
      '/srv/edge/conf/edge.toml',
    );
    assert.equal(settings.file, '/srv/edge/conf/edge.toml');
    assert.equal(settings.server.statusSocket, '/srv/edge/run/edge.sock');
    assert.equal(settings.tls.storage, '/srv/edge/conf/certs');
    assert.equal(settings.tls.directoryCa, '/srv/edge/conf/pebble.pem');
    assert.equal(settings.tls.wildcard.dnsHook, '/srv/edge/conf/hooks/dns.sh');
    assert.deepEqual(settings.tls.files, [
      { hosts: ['example.org', '*.example.org'], cert: '/srv/edge/conf/tls/example.crt', key: '/abs/example.key' },
    ]);
    assert.equal(settings.programs.local[0]?.cwd, '/srv/edge/examples/counter');
  });

  it('keep a bare dns hook name for PATH lookup', () => {
    assert.equal(parse(`${BASE}wildcard = { enabled = true, dns_hook = "dns-hook" }\n`).tls.wildcard.dnsHook, 'dns-hook');
  });
});

describe('syntax errors', () => {
  it('become one issue with the line and column', () => {
    assert.deepEqual(issues(`[server]\ndomain = "a.b"\nmax = = 3\n`), ['3:7 : syntax error: invalid value']);
  });

  it('report a redefined table where it is redefined', () => {
    assert.deepEqual(issues(`[server]\ndomain = "a.b"\n\n[server]\n`), [
      '4:2 : syntax error: trying to redefine an already defined table or value',
    ]);
  });
});

describe('unknown keys', () => {
  it('are reported at top level, in tables and in array-of-tables entries', () => {
    const text = `colour = "blue"
[server]
domain = "vm.example.org"
domian = "typo"
[tls]
mode = "internal"
[[programs.local]]
hash = "${HASH_A}"
command = ["a"]
[[programs.local]]
hash = "${HASH_B}"
command = ["b"]
  memory = 64
[extra]
`;
    assert.deepEqual(issues(text), [
      '1:1 colour: unknown key',
      '4:1 server.domian: unknown key (did you mean "domain"?)',
      '13:3 programs.local[1].memory: unknown key (did you mean "memory_mib"?)',
      '14:1 extra: unknown key',
    ]);
  });

  it('are reported inside inline tables and sub-tables', () => {
    const text = `${BASE}issue_rate = { burst = 1, intervall = "1s" }
[server.limits]
max_header_byte = 1
`;
    assert.deepEqual(issues(text), [
      '5:27 tls.issue_rate.intervall: unknown key (did you mean "interval"?)',
      '7:1 server.limits.max_header_byte: unknown key (did you mean "max_header_bytes"?)',
    ]);
  });
});

describe('type and value errors', () => {
  it('name the expected type and point at the key', () => {
    const text = `${BASE}[orchestrator]
idle_timeout = 20
max_vms = 1.0
driver = "docker"
boot_timeout = "20 seconds"
hold_queue = 0
[server.limits]
max_header_bytes = "16kb"
`;
    assert.deepEqual(issues(text), [
      '6:1 orchestrator.idle_timeout: expected a duration string like "20s", got integer',
      '7:1 orchestrator.max_vms: expected an integer, got float',
      '8:1 orchestrator.driver: must be one of process, qemu, firecracker; got "docker"',
      '9:1 orchestrator.boot_timeout: invalid duration "20 seconds": use a number and a unit (ms, s, m, h, d), like "20s" or "1h30m"',
      '10:1 orchestrator.hold_queue: must be a positive integer, got 0',
      '12:1 server.limits.max_header_bytes: invalid size "16kb": use a number and a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), like "16KiB"',
    ]);
  });

  it('are all collected, sorted by position', () => {
    const text = `[server]
https_listen = ["0.0.0.0:443", "[::]:0", "localhost", "localhost:443"]
status_socket_mode = 660
domain = "bad_domain.org."
[tls]
mode = "acme"
challenges = []
[[routes]]
host = "a.example.org"
program = "${HASH_A}"
[[routes]]
host = "A.example.org"
program = "not-a-hash"
[routing]
dns_servers = ["resolver.local"]
`;
    assert.deepEqual(issues(text), [
      '2:32 server.https_listen[1]: "[::]:0" needs a port between 1 and 65535',
      '2:42 server.https_listen[2]: "localhost" needs a port, like "0.0.0.0:443"',
      '2:55 server.https_listen[3]: "localhost:443": the host must be an IP address, like "0.0.0.0:443" or "[::]:443"',
      '3:1 server.status_socket_mode: mode 660 is out of range 0..0o777 (write octal as 0o660)',
      '4:1 server.domain: "bad_domain.org." must not end with a dot',
      '5:1 tls.email: is required when mode = "acme"',
      '7:1 tls.challenges: must not be empty when mode = "acme"',
      '12:1 routes[1].host: duplicate route for "a.example.org": already defined by routes[0]',
      '13:1 routes[1].program: "not-a-hash" is not a program hash (64 hex characters)',
      '15:16 routing.dns_servers[0]: "resolver.local" is not an IP address with an optional port',
    ]);
  });

  it('report a missing domain at the [server] header, or 1:1 without one', () => {
    assert.deepEqual(issues(`# c\n\n[server]\nhttp_listen = []\n[tls]\nmode = "internal"\n`), ['3:1 server.domain: is required']);
    assert.deepEqual(issues(`[tls]\nmode = "internal"\n`), ['1:1 server.domain: is required']);
  });

  it('reject a port or invalid labels in the domain', () => {
    assert.deepEqual(issues(`[server]\ndomain = "vm.example.org:443"\n[tls]\nmode = "internal"\n`), [
      '2:1 server.domain: "vm.example.org:443" must be a bare host name without a port',
    ]);
    assert.deepEqual(issues(`[server]\ndomain = "-vm.example.org"\n[tls]\nmode = "internal"\n`), [
      '2:1 server.domain: "-vm.example.org" is not a valid DNS name (label "-vm")',
    ]);
  });

  it('check tls files mode and its entries', () => {
    const text = `[server]
domain = "vm.example.org"
[tls]
mode = "files"
`;
    assert.deepEqual(issues(text), ['4:1 tls.mode: mode = "files" needs at least one [[tls.files]] entry']);
    assert.deepEqual(issues(`${text}[[tls.files]]\nhosts = []\ncert = "c.pem"\n`), [
      '5:1 tls.files[0].key: is required',
      '6:1 tls.files[0].hosts: must list at least one host',
    ]);
  });

  it('check program entries', () => {
    const text = `${BASE}[[programs.local]]
hash = "${HASH_A}"
name = "counter"
command = "node server.js"
env = { PORT = 8080 }
health_path = "health"
[[programs.local]]
hash = "${HASH_A.toUpperCase()}"
name = "counter"
command = ["node"]
[[programs.local]]
name = "nohash"
`;
    assert.deepEqual(issues(text), [
      '8:1 programs.local[0].command: expected an array of strings, got string',
      '9:9 programs.local[0].env.PORT: expected a string, got integer',
      '10:1 programs.local[0].health_path: must start with "/", got "health"',
      '12:1 programs.local[1].hash: duplicate hash: already used by programs.local[0]',
      '13:1 programs.local[1].name: duplicate name "counter": already used by programs.local[0]',
      '15:1 programs.local[2].hash: is required',
      '15:1 programs.local[2].command: is required: the program and its arguments, like ["node", "server.js"]',
    ]);
  });
});

describe('server.protocols and server.hsts', () => {
  const base = '[server]\ndomain = "vm.example.org"\n';
  it('HSTS by default in acme mode only; an explicit value holds in any mode', () => {
    assert.equal(parse(`${base}[tls]\nemail = "ops@example.org"\n`).server.hsts, 'max-age=31536000');
    assert.equal(parse(`${base}[tls]\nmode = "internal"\n`).server.hsts, '');
    assert.equal(parse(`${base}hsts = "max-age=600; includeSubDomains"\n[tls]\nmode = "internal"\n`).server.hsts, 'max-age=600; includeSubDomains');
    assert.equal(parse(`${base}hsts = ""\n[tls]\nemail = "ops@example.org"\n`).server.hsts, '');
  });
  it('protocols take h1 and h2 only', () => {
    assert.deepEqual(parse(`${base}protocols = ["h1"]\n[tls]\nmode = "internal"\n`).server.protocols, ['h1']);
    assert.deepEqual(issues(`${base}protocols = ["h3"]\nhsts = "1 year"\n[tls]\nmode = "internal"\n`), [
      '3:1 server.protocols: unknown protocol "h3": use "h1" and/or "h2"',
      '4:1 server.hsts: "1 year" is not a Strict-Transport-Security value (max-age=<seconds>[; includeSubDomains][; preload]; "" for none)',
    ]);
    assert.deepEqual(issues(`${base}protocols = []\n[tls]\nmode = "internal"\n`), ['3:1 server.protocols: must name at least one of "h1", "h2"']);
  });
  it('handshake_timeout cannot be 0', () => {
    assert.deepEqual(issues(`${base}[server.limits]\nhandshake_timeout = "0s"\n[tls]\nmode = "internal"\n`), ['4:1 server.limits.handshake_timeout: must be at least 100ms, got "0s"']);
    });
  });

describe('ASGI programs', () => {
  it('reads asgi + code (relative to the file) and drivers.process.python', () => {
    const settings = parseConfig(`${BASE}[[programs.local]]
hash = "${HASH_A}"
asgi = "main:app"
code = "../examples/asgi-counter"
[drivers.process]
python = "../venv/bin/python3"
`, '/srv/edge/conf/edge.toml');
    const [program] = settings.programs.local;
    assert.deepEqual(program?.asgi, { app: 'main:app', code: '/srv/edge/examples/asgi-counter' });
    assert.deepEqual(program?.command, []);
    assert.equal(program?.cwd, '/srv/edge/examples/asgi-counter'); // the app's folder unless cwd says otherwise
    assert.equal(program?.vm, undefined);
    assert.equal(settings.drivers?.process.python, '/srv/edge/venv/bin/python3');
    assert.equal(parse(`${BASE}[drivers.process]\n`).drivers?.process.python, 'python3');
  });

  it('check the asgi value, code and command with file:line', () => {
    const text = `${BASE}[[programs.local]]
hash = "${HASH_A}"
asgi = "main.app"
code = "app"
[[programs.local]]
hash = "${HASH_B}"
asgi = "main:app"
command = ["node", "x.js"]
[drivers.process]
python = ""
`;
    assert.deepEqual(issues(text), [
      '7:1 programs.local[0].asgi: must be "module:attribute" with Python identifiers, like "main:app", got "main.app"',
      '9:1 programs.local[1].code: is required with asgi: the folder holding the app, relative to this file',
      '12:1 programs.local[1].command: not used with asgi: the ASGI server (guest/aleph_asgi) is the command; remove one of them',
      '14:1 drivers.process.python: must not be empty',
    ]);
  });
});

describe('ConfigError', () => {
  it('formats one file:line:column: key: message line per issue', () => {
    try {
      parseConfig(`[server]\ndomain = "a.b"\nbogus = 1\n[tls]\nmode = "nope"\n`, 'conf/x.toml');
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.format(),
        'conf/x.toml:3:1: server.bogus: unknown key\n' +
          'conf/x.toml:5:1: tls.mode: must be one of acme, internal, files; got "nope"',
      );
      assert.equal(error.message, 'conf/x.toml:3:1: server.bogus: unknown key (and 1 more)');
    }
  });

  it('names in-memory text <config> and omits the key of syntax errors', () => {
    try {
      parseConfig('a = ', '');
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.issues.length, 1);
      assert.match(error.format(), /^<config>:1:5: syntax error: /);
    }
  });
});

describe('loadConfig / checkConfig', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aleph-edge-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file and resolves paths against its directory', async () => {
    const file = join(dir, 'good.toml');
    await writeFile(file, `${BASE}storage = "certs"\n`);
    const settings = await loadConfig(file);
    assert.equal(settings.file, file);
    assert.equal(settings.tls.storage, join(dir, 'certs'));
    assert.deepEqual(await checkConfig(file), []);
  });

  it('checkConfig returns the issues of a bad file', async () => {
    const file = join(dir, 'bad.toml');
    await writeFile(file, `${BASE}[orchestrator]\nmax_vms = "many"\nfoo = 1\n`);
    const found = await checkConfig(file);
    assert.deepEqual(found.map(formatIssue), [
      `${file}:6:1: orchestrator.max_vms: expected an integer, got string`,
      `${file}:7:1: orchestrator.foo: unknown key`,
    ]);
  });

  it('reports an unreadable file as one issue without a position', async () => {
    const file = join(dir, 'missing.toml');
    const found = await checkConfig(file);
    assert.deepEqual(found, [{ file, line: 0, column: 0, key: '', message: 'cannot read config file (ENOENT)' }]);
    assert.equal(formatIssue(found[0]!), `${file}: cannot read config file (ENOENT)`);
    await assert.rejects(loadConfig(file), ConfigError);
  });
});

describe('[guest_api]', () => {
  it('reads every key; socket_dir follows the status socket unless set', () => {
    const settings = parse(BASE.replace('[tls]', 'status_socket = "/srv/ae/status.sock"\n[tls]'));
    assert.equal(settings.guestApi.socketDir, '/srv/ae/guest-api');
    const custom = parse(`${BASE}[guest_api]\nenabled = false\nredis = "unix:/run/redis/redis.sock"\nsocket_dir = "gapi"\nmax_value_size = "4KiB"\nmax_keys = 10\nkey_ttl = "1h"\nredis_timeout = "500ms"\napi_timeout = "3s"\nmax_response_size = "1MiB"\nmax_connections = 4\nidle_timeout = "5s"\n`);
    assert.deepEqual(custom.guestApi, {
      enabled: false, redis: 'unix:/run/redis/redis.sock', socketDir: '/etc/aleph-edge/gapi', maxValueBytes: 4096, maxKeys: 10,
      keyTtlMs: 3_600_000, redisTimeoutMs: 500, apiTimeoutMs: 3000, maxResponseBytes: 1024 * 1024, maxConnections: 4, idleTimeoutMs: 5000,
    });
    assert.equal(parse(`${BASE}[guest_api]\nredis = "redis://:secret@10.0.0.5:6380/2"\n`).guestApi.redis, 'redis://:secret@10.0.0.5:6380/2');
  });

  it('reports bad values with their line', () => {
    assert.deepEqual(issues(`${BASE}[guest_api]\nredis = "http://127.0.0.1:6379"\nmax_keys = 0\nmax_value_size = "1GiB"\nunknown = 1\n`), [
      '6:1 guest_api.redis: "http://127.0.0.1:6379" is not redis://[user:password@]host[:port][/db] or unix:/path',
      '7:1 guest_api.max_keys: must be a positive integer, got 0',
      '8:1 guest_api.max_value_size: must be at most 512MiB (the Redis limit)',
      '9:1 guest_api.unknown: unknown key',
    ]);
    assert.deepEqual(issues(`${BASE}[guest_api]\nredis = "unix:relative.sock"\n`), ['6:1 guest_api.redis: "unix:relative.sock" must be unix:/absolute/path']);
    assert.match(issues(`${BASE}[guest_api]\nsocket_dir = "/${'d'.repeat(90)}"\n`)[0]!, /guest_api.socket_dir: .* too long/);
  });
});
