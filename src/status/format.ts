// Human-readable renderings of status API data for the CLI. Scripts should use
// --json instead: these layouts may change.

import type { ExecutionInfo } from '../orchestrator/index.js';
import type { CertInfo } from '../tls/index.js';
import { hostPort } from '../common/index.js';
import type { StatusSnapshot } from './types.js';
import type { ListenerRecord } from './wire.js';
import { printable, renderTable, type Column } from './table.js';

const DAY_MS = 86_400_000;
const SHORT_HASH_CHARS = 12;
const LABEL_WIDTH = 11;

/** A key/value summary of the node. */
export function formatStatus(snapshot: StatusSnapshot): string {
  const lines: string[] = [];
  const field = (label: string, values: readonly string[]) => {
    const shown = values.length > 0 ? values : ['none'];
    shown.forEach((value, i) => lines.push(`${(i === 0 ? label : '').padEnd(LABEL_WIDTH)}${printable(value)}`.trimEnd()));
  };
  field('version', [snapshot.version]);
  field('uptime', [formatDuration(snapshot.uptime_s)]);
  field('state', [snapshot.draining ? 'draining' : 'serving']);
  field('listeners', snapshot.listeners.map(formatListener));
  field('workers', snapshot.workers && snapshot.workers.length > 0
    ? snapshot.workers.map((w) => `#${w.index} pid ${w.pid ?? '-'}, ${w.leases} open lease${w.leases === 1 ? '' : 's'}`)
    : ['none (single process)']);
  field('programs', [summarizeVms(snapshot.vms)]);
  field('certs', [summarizeCerts(snapshot.certs)]);
  const counters = Object.entries(snapshot.counters).sort(([a], [b]) => a.localeCompare(b));
  const keyWidth = Math.max(0, ...counters.map(([key]) => key.length));
  field('counters', counters.map(([key, value]) => `${key.padEnd(keyWidth)}  ${value}`));
  return lines.join('\n') + '\n';
}

/** 'https 127.0.0.1:8443', 'http [::]:80 (fd 4)', 'https fd 3' (an inherited socket that is not TCP). */
export function formatListener(listener: ListenerRecord): string {
  const fd = listener.fd === undefined ? '' : `fd ${listener.fd}`;
  if (listener.address === undefined || listener.port === undefined) return `${listener.protocol} ${fd || 'unbound'}`;
  return `${listener.protocol} ${hostPort(listener.address, listener.port)}${fd ? ` (${fd})` : ''}`;
}

/** One row per execution; an explicit line when nothing runs. */
export function formatVms(list: readonly ExecutionInfo[], now: Date = new Date()): string {
  if (list.length === 0) return 'no programs running\n';
  const columns: Column[] = [
    { header: 'HASH' },
    { header: 'NAME' },
    { header: 'STATE' },
    { header: 'DRIVER' },
    { header: 'ENDPOINT' },
    { header: 'UPTIME', align: 'right' },
    { header: 'REQUESTS', align: 'right' },
    { header: 'IN-FLIGHT', align: 'right' },
    { header: 'MEM', align: 'right' },
  ];
  const rows = list.map((vm) => [
    shortenHash(vm.hash),
    vm.name || '-',
    vm.state,
    vm.driver,
    vm.endpoint || '-',
    formatDuration(secondsSince(vm.started_at, now)),
    String(vm.requests),
    String(vm.in_flight),
    `${vm.memory_mib} MiB`,
  ]);
  return renderTable(columns, rows);
}

/** One row per certificate, with days until expiry. */
export function formatCerts(list: readonly CertInfo[], now: Date = new Date()): string {
  if (list.length === 0) return 'no certificates\n';
  const columns: Column[] = [
    { header: 'HOST' },
    { header: 'SOURCE' },
    { header: 'NOT AFTER' },
    { header: 'DAYS LEFT', align: 'right' },
    { header: 'ISSUER' },
  ];
  const rows = list.map((cert) => [cert.host, cert.source, formatDate(cert.notAfter), daysLeft(cert.notAfter, now), cert.issuer]);
  return renderTable(columns, rows);
}

/** First 12 hex chars and an ellipsis: enough to tell programs apart in a table. */
export function shortenHash(hash: string): string {
  return hash.length > SHORT_HASH_CHARS ? `${hash.slice(0, SHORT_HASH_CHARS)}…` : hash;
}

/** Compact duration: 42s, 5m07s, 3h05m, 2d03h; '-' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.floor(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
}

function secondsSince(iso: string, now: Date): number {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? Number.NaN : Math.max(0, (now.getTime() - at) / 1000);
}

function formatDate(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso || '-';
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function daysLeft(notAfter: string, now: Date): string {
  const at = Date.parse(notAfter);
  if (Number.isNaN(at)) return '?';
  const left = at - now.getTime();
  return left < 0 ? 'expired' : String(Math.floor(left / DAY_MS));
}

function summarizeVms(vms: readonly ExecutionInfo[]): string {
  if (vms.length === 0) return 'none running';
  const byState = new Map<string, number>();
  for (const vm of vms) byState.set(vm.state, (byState.get(vm.state) ?? 0) + 1);
  const parts = [...byState].map(([state, count]) => `${count} ${state}`);
  return `${vms.length} (${parts.join(', ')})`;
}

function summarizeCerts(certs: StatusSnapshot['certs']): string {
  const parts = Object.entries(certs.by_source)
    .filter(([, count]) => count > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([source, count]) => `${source} ${count}`);
  return parts.length > 0 ? `${certs.count} (${parts.join(', ')})` : String(certs.count);
}
