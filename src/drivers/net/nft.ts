// The pool's nftables rules, in one `inet` table of our own (filter + nat chains),
// written and read back as nft JSON (`nft -j`). Every rule carries its VM's tap name
// as comment, so a VM's rules are found and deleted by handle in one atomic batch;
// the table goes when its last rule does. The operator's tables are never read for
// writing, flushed or changed. A base chain elsewhere with policy drop still drops
// our traffic (nftables accepts a packet only if every base chain at a hook does):
// docs/networking.md says what to allow there.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Protocol = 'tcp' | 'udp';

/** What one VM needs from the firewall. */
export interface VmFirewall {
  tap: string;
  guestIp: string;
  /** Host interface towards the internet; '' when the node has none configured. */
  uplink: string;
  internet: boolean;
  /** The VM's IPv6 /124 ("addr/124"), reachable from outside when set. */
  ipv6Network?: string;
  /** Host port -> guest port DNATs. */
  forwards: Array<{ protocol: Protocol; hostPort: number; guestPort: number }>;
}

export interface NftRule {
  chain: string;
  handle: number;
  comment: string;
}

type Expr = Record<string, unknown>;

const match = (left: unknown, right: unknown, op = '=='): Expr => ({ match: { op, left, right } });
const meta = (key: string) => ({ meta: { key } });
const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
const ACCEPT: Expr = { accept: null };
const DROP: Expr = { drop: null };

export class NftablesError extends Error {
  override readonly name = 'NftablesError';
  readonly code = 'nftables';
}

export class Nftables {
  constructor(
    readonly table: string,
    private readonly netns = '',
  ) {}

  /**
   * Sets the VM's rules (creating our table and chains when missing) in one transaction,
   * replacing any it had (its forwards changed, or a failed teardown left some): no
   * moment without them, never twice.
   */
  async replaceVm(vm: VmFirewall): Promise<void> {
    const old = ((await this.rules()) ?? []).filter((r) => r.comment === vm.tap);
    await this.apply([...this.vmCommands(vm), ...old.map((r) => this.deleteRule(r))]);
  }

  private deleteRule(r: NftRule): unknown {
    return { delete: { rule: { family: 'inet', table: this.table, chain: r.chain, handle: r.handle } } };
  }

  private vmCommands(vm: VmFirewall): unknown[] {
    const rule = (chain: string, expr: Expr[]) => ({ add: { rule: { family: 'inet', table: this.table, chain, comment: vm.tap, expr } } });
    const iif = match(meta('iifname'), vm.tap);
    const oif = match(meta('oifname'), vm.tap);
    const commands: unknown[] = [...this.skeleton()];
    // Forward: replies and port-forwarded connections in, the VM's own subnet out when it
    // may use the internet (source checked: no spoofing), everything else to or from the tap dropped.
    commands.push(rule('forward', [oif, match({ ct: { key: 'state' } }, ['established', 'related'], 'in'), ACCEPT]));
    if (vm.forwards.length > 0) commands.push(rule('forward', [oif, match({ ct: { key: 'status' } }, 'dnat', 'in'), ACCEPT]));
    if (vm.ipv6Network) {
      commands.push(rule('forward', [oif, match(payload('ip6', 'daddr'), prefixOf(vm.ipv6Network)), ACCEPT]));
    }
    commands.push(rule('forward', [iif, match({ ct: { key: 'state' } }, ['established', 'related'], 'in'), ACCEPT]));
    if (vm.internet && vm.uplink !== '') {
      const out = match(meta('oifname'), vm.uplink);
      commands.push(rule('forward', [iif, out, match(payload('ip', 'saddr'), vm.guestIp), ACCEPT]));
      if (vm.ipv6Network) commands.push(rule('forward', [iif, out, match(payload('ip6', 'saddr'), prefixOf(vm.ipv6Network)), ACCEPT]));
      commands.push(rule('postrouting', [match(payload('ip', 'saddr'), vm.guestIp), match(meta('oifname'), vm.uplink), { masquerade: null }]));
    }
    commands.push(rule('forward', [iif, DROP]));
    commands.push(rule('forward', [oif, DROP]));
    // Port forwards: only packets addressed to the host itself, from outside (prerouting) or from the host (output).
    for (const f of vm.forwards) {
      const expr = [
        match(meta('nfproto'), 'ipv4'),
        match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'),
        match(payload(f.protocol, 'dport'), f.hostPort),
        { dnat: { family: 'ip', addr: vm.guestIp, port: f.guestPort } },
      ];
      commands.push(rule('prerouting', expr), rule('output', expr));
    }
    return commands;
  }

  /** Deletes every rule tagged with this tap; the table too when nothing else is left in it. Idempotent. */
  async removeVm(tap: string): Promise<void> {
    await this.removeWhere((comment) => comment === tap);
  }

  /** Deletes the rules whose tag `stale` says is stale (reclaim after a crash). */
  async removeWhere(stale: (comment: string) => boolean): Promise<string[]> {
    const rules = await this.rules();
    if (rules === undefined) return [];
    const doomed = rules.filter((r) => stale(r.comment));
    const commands: unknown[] = doomed.map((r) => this.deleteRule(r));
    if (doomed.length === rules.length) commands.push({ delete: { table: { family: 'inet', name: this.table } } });
    if (commands.length > 0) await this.apply(commands);
    return [...new Set(doomed.map((r) => r.comment))];
  }

  /** Our rules, or undefined when our table does not exist. */
  async rules(): Promise<NftRule[] | undefined> {
    let stdout: string;
    try {
      ({ stdout } = await this.nft(['-j', 'list', 'table', 'inet', this.table]));
    } catch (err) {
      const text = String((err as { stderr?: string }).stderr ?? '');
      if (/No such file or directory|does not exist/i.test(text)) return undefined;
      throw err;
    }
    const parsed = JSON.parse(stdout) as { nftables: Array<{ rule?: { chain: string; handle: number; comment?: string } }> };
    return parsed.nftables.flatMap((e) => (e.rule ? [{ chain: e.rule.chain, handle: e.rule.handle, comment: e.rule.comment ?? '' }] : []));
  }

  private skeleton(): unknown[] {
    const chain = (name: string, type: string, hook: string, prio: number) => ({
      add: { chain: { family: 'inet', table: this.table, name, type, hook, prio, policy: 'accept' } },
    });
    return [
      { add: { table: { family: 'inet', name: this.table } } },
      chain('forward', 'filter', 'forward', 0),
      chain('prerouting', 'nat', 'prerouting', -100),
      chain('output', 'nat', 'output', -100),
      chain('postrouting', 'nat', 'postrouting', 100),
    ];
  }

  /** One nft transaction: all of the commands or none. (JSON as an argument: `-f -` cannot read a socket stdin.) */
  private async apply(commands: unknown[]): Promise<void> {
    try {
      await this.nft(['-j', JSON.stringify({ nftables: commands })]);
    } catch (err) {
      if (err instanceof NftablesError) throw err;
      const text = String((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
      throw new NftablesError(`nft refused the rules of table ${this.table}: ${text.split('\n')[0]}`);
    }
  }

  private nft(args: string[]): Promise<{ stdout: string }> {
    if (this.netns) return run('ip', ['netns', 'exec', this.netns, 'nft', ...args]);
    return run('nft', args).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new NftablesError('nft is not installed (apt install nftables)');
      throw err;
    });
  }
}

function prefixOf(cidr: string): { prefix: { addr: string; len: number } } {
  const [addr, len] = cidr.split('/');
  return { prefix: { addr: addr!, len: Number(len) } };
}
