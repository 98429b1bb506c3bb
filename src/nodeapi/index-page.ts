import { hashToLabel } from '../common/index.js';
import type { NodeOverview } from './types.js';

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : `${m}m ${seconds % 60}s`;
}

const LINKS: Array<[string, string]> = [
  ['/about/usage/system', 'system usage (CPU, memory, disk)'],
  ['/about/capability', 'host capability'],
  ['/about/executions/list', 'running programs'],
  ['/v2/about/executions/list', 'executions with their timeline'],
  ['/status/check/fastapi', 'diagnostic program check'],
  ['/status/check/host', 'host network check'],
  ['/status/check/ipv6', 'IPv6 check'],
  ['/status/check/version?reference=0.1.0', 'version check'],
  ['/status/config', 'public configuration'],
];

/** The page for people: what this node is and how to reach a program on it. */
export function renderIndex(o: NodeOverview): string {
  const authority = o.https_port === 443 ? o.domain : `${o.domain}:${o.https_port}`;
  const hash = o.check_program;
  const label = hashToLabel(hash);
  const links = LINKS.map(([href, text]) => `<li><a href="${escape(href)}">${escape(href)}</a> — ${escape(text)}</li>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aleph-edge ${escape(o.domain)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5}code{background:#f3f3f3;padding:0 .2em;word-break:break-all}</style>
</head><body>
<h1>Aleph compute node <code>${escape(o.domain)}</code></h1>
<p>aleph-edge <strong>${escape(o.version)}</strong>, up ${escape(duration(o.uptime_s))}.</p>
<h2>Programs</h2>
<p><strong>${o.executions}</strong> running, using <strong>${o.memory_used_mib}</strong> MiB of a ${o.memory_budget_mib} MiB budget.</p>
<h2>Reaching a program</h2>
<p>By path: <code>https://${escape(authority)}/vm/&lt;program hash&gt;/&lt;path&gt;</code>, e.g.
<a href="/vm/${hash}/"><code>https://${escape(authority)}/vm/${hash}/</code></a> (this node's diagnostic program).</p>
<p>By host name, the hash in base32: <code>https://${escape(label)}.${escape(authority)}/</code></p>
<p>By your own domain: a <code>_aleph-id.&lt;your domain&gt;</code> TXT record holding the hash, and a CNAME to <code>${escape(o.domain)}</code>.</p>
<h2>Node API</h2>
<ul>
${links}
</ul>
</body></html>
`;
}
