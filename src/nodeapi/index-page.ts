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
  ['/status/check/version?reference=1.0.0', 'version check'],
  ['/status/config', 'public configuration'],
  ['/about/executions/records', 'execution records'],
  ['/about/usage/history', 'the last hour of CPU and memory samples (this page\'s chart)'],
  ['/about/executions/states', 'executions with their states (this page\'s table)'],
  ['/about/tls/certificates', 'certificate expiries (this page\'s table)'],
];

const CHECKS: Array<[string, string]> = [
  ['check-fastapi', 'Diagnostic program'],
  ['check-host-ipv4', 'Host IPv4'],
  ['check-host-ipv6', 'Host IPv6'],
  ['check-vm-ipv6', 'Program IPv6'],
  ['check-version', 'Version'],
];

/**
 * The operator's page: what this node is, its checks (run by the page's script against
 * the node's own check pages), an hour of CPU and memory use, what runs, the
 * certificates' expiry, and how to reach a program. Script and style come from the node
 * (`/about/page/*`); the page shows nothing that is not on a public node page.
 */
export function renderIndex(o: NodeOverview, alephVmVersion: string): string {
  const authority = o.https_port === 443 ? o.domain : `${o.domain}:${o.https_port}`;
  const hash = o.check_program;
  const label = hashToLabel(hash);
  const links = LINKS.map(([href, text]) => `<li><a href="${escape(href)}">${escape(href)}</a> — ${escape(text)}</li>`).join('\n');
  const checks = CHECKS.map(([id, name]) => `<li id="${id}" data-state="pending"><strong>${escape(name)}</strong><span class="badge">…</span><span class="detail">running</span></li>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aleph-edge ${escape(o.domain)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/about/page/node.css">
<link rel="icon" href="data:,">
</head><body data-aleph-vm-version="${escape(alephVmVersion)}">
<header>
<h1>Aleph compute node <code>${escape(o.domain)}</code></h1>
<p>aleph-edge <strong>${escape(o.version)}</strong>, up ${escape(duration(o.uptime_s))}, answering the API of aleph-vm ${escape(alephVmVersion)}</p>
<p>node hash ${o.node_hash ? `<code>${escape(o.node_hash)}</code>` : '<em>not set</em> (<code>node.node_hash</code>)'}</p>
</header>
<section id="checks-panel"><h2>Checks</h2>
<ul class="checks">
${checks}
</ul>
<p><button id="compare-latest" type="button">Compare with aleph-vm's latest release</button> <span id="latest-release"></span></p>
</section>
<section><h2>CPU and memory, last hour</h2>
<p class="legend"><span><i class="swatch-cpu"></i>host CPU <strong id="now-cpu">–</strong></span><span><i class="swatch-mem"></i>memory used <strong id="now-memory">–</strong></span>
<span>${o.executions} running, ${o.memory_used_mib} of ${o.memory_budget_mib} MiB budget</span></p>
<svg id="usage-chart" role="img" aria-label="CPU and memory use over the last hour" data-points="0"></svg>
</section>
<section><h2>Executions</h2>
<table id="executions" data-rows="0"><thead><tr><th>program</th><th>name</th><th>state</th><th>driver</th><th>booted</th><th>requests</th><th>last request</th><th>memory</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Certificates</h2>
<table id="certificates" data-rows="0"><thead><tr><th>host</th><th>from</th><th>expires</th><th>left</th><th>renewal</th></tr></thead><tbody></tbody></table>
</section>
<section><h2>Reaching a program</h2>
<p>By path: <code>https://${escape(authority)}/vm/&lt;program hash&gt;/&lt;path&gt;</code>, e.g.
<a href="/vm/${hash}/"><code>https://${escape(authority)}/vm/${hash}/</code></a> (this node's diagnostic program).</p>
<p>By host name, the hash in base32: <code>https://${escape(label)}.${escape(authority)}/</code></p>
<p>By your own domain: a <code>_aleph-id.&lt;your domain&gt;</code> TXT record holding the hash, and a CNAME to <code>${escape(o.domain)}</code>.</p>
</section>
<section><h2>Node API</h2>
<ul>
${links}
</ul>
</section>
<footer id="refreshed">loading…</footer>
<script src="/about/page/node.js"></script>
</body></html>
`;
}
