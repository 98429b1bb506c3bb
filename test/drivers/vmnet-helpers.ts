// Reading our nftables state back as nft JSON (what a test asserts on), in a namespace.

import { execFileSync } from 'node:child_process';

export interface ListedRule {
  chain: string;
  comment: string;
  /** The rule's expressions as JSON text, for matching. */
  text: string;
}

/** The table's JSON listing, or undefined when it does not exist. */
export function nftTable(netns: string, table: string): unknown[] | undefined {
  try {
    const out = execFileSync('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'table', 'inet', table], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return (JSON.parse(out) as { nftables: unknown[] }).nftables;
  } catch (err) {
    if (/No such file or directory/.test(String((err as { stderr?: string }).stderr))) return undefined;
    throw err;
  }
}

export function nftRules(netns: string, table: string): ListedRule[] {
  return (nftTable(netns, table) ?? []).flatMap((entry) => {
    const rule = (entry as { rule?: { chain: string; comment?: string; expr: unknown } }).rule;
    return rule ? [{ chain: rule.chain, comment: rule.comment ?? '', text: JSON.stringify(rule.expr) }] : [];
  });
}

/** Every table in the namespace, as "family name". */
export function nftTables(netns: string): string[] {
  const out = execFileSync('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'tables'], { encoding: 'utf8' });
  return (JSON.parse(out) as { nftables: Array<{ table?: { family: string; name: string } }> }).nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}

/**
 * The address the network's monitor pings for a VM, computed the way aleph-scoring
 * does (Python, ipaddress): vm type 1 for programs, 3 for instances.
 */
export function monitorAddress(pool: string, hash: string, vmType: 1 | 3 = 1): string {
  const script = [
    'import ipaddress, sys',
    'net = ipaddress.IPv6Network(sys.argv[1], strict=False)',
    'h = sys.argv[2]',
    'print(ipaddress.IPv6Address(":".join(net.exploded.split(":")[:4] + [sys.argv[3], h[0:4], h[4:8], h[8:11] + "1"])))',
  ].join('\n');
  return execFileSync('python3', ['-c', script, pool, hash, String(vmType)], { encoding: 'utf8' }).trim();
}
