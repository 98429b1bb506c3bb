// The index page's script and style, served by the node itself (/about/page/*): a node
// may not reach a CDN, and the page's Content-Security-Policy allows only 'self'.
// Plain ES2020 in a raw string (no build step); it reads only public node pages.

export const PAGE_SCRIPT = String.raw`'use strict';
(function () {
  var body = document.body;
  var apiVersion = body.getAttribute('data-aleph-vm-version');
  var REFRESH_MS = 10000;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { node.append(c instanceof Node ? c : document.createTextNode(String(c))); });
    return node;
  }

  function setCheck(id, state, text) {
    var node = document.getElementById(id);
    node.setAttribute('data-state', state);
    node.querySelector('.badge').textContent = state === 'ok' ? 'ok' : state === 'fail' ? 'failed' : state === 'error' ? 'unreachable' : '…';
    if (text !== undefined) node.querySelector('.detail').textContent = text;
  }

  // The monitor needs the required checks; the others are told apart so that a green badge never hides a failure.
  function describeDiagnostic(status, result) {
    var failed = Object.keys(result).filter(function (k) { return result[k] === false; });
    if (failed.length === 0) return 'all ' + Object.keys(result).length + ' checks pass (' + Object.keys(result).join(', ') + ')';
    return (status === 200 ? 'required checks pass; not required, failing: ' : 'failing: ') + failed.join(', ');
  }

  async function getJson(path) {
    var res = await fetch(path, { cache: 'no-store' });
    var data = await res.json();
    return { status: res.status, data: data };
  }

  async function runChecks() {
    var jobs = [
      getJson('/status/check/fastapi').then(function (r) {
        setCheck('check-fastapi', r.status === 200 ? 'ok' : 'fail', describeDiagnostic(r.status, r.data));
      }),
      getJson('/status/check/host').then(function (r) {
        ['ipv4', 'ipv6'].forEach(function (family) {
          var f = r.data[family];
          var required = f.egress && f.dns && f.domain;
          setCheck('check-host-' + family, required ? 'ok' : 'fail', 'egress ' + mark(f.egress) + ' · DNS ' + mark(f.dns) + ' · domain ' + mark(f.domain) + ' · HTTPS to this node ' + mark(f.http));
        });
      }),
      getJson('/status/check/ipv6').then(function (r) {
        setCheck('check-vm-ipv6', r.data.vm ? 'ok' : 'fail', 'host ' + mark(r.data.host) + ' · diagnostic program ' + mark(r.data.vm));
      }),
      fetch('/status/check/version?reference=' + encodeURIComponent(apiVersion), { cache: 'no-store' }).then(async function (res) {
        var text = await res.text();
        var server = res.headers.get('server') || '';
        var scored = /^aleph-vm\/(.+)$/.test(server);
        setCheck('check-version', res.status === 200 && scored ? 'ok' : 'fail', 'Server: ' + server + ' (' + (scored ? 'the monitor reads version ' + server.slice(9) : 'not a version the monitor reads') + ') · ' + text.trim());
      }),
    ];
    var ids = ['check-fastapi', 'check-host-ipv4', 'check-vm-ipv6', 'check-version'];
    var settled = await Promise.allSettled(jobs);
    settled.forEach(function (s, i) {
      if (s.status === 'rejected') {
        setCheck(ids[i], 'error', String(s.reason && s.reason.message || s.reason));
        if (ids[i] === 'check-host-ipv4') setCheck('check-host-ipv6', 'error', '');
      }
    });
    body.setAttribute('data-checks', 'done');
  }

  function mark(ok) { return ok ? '✓' : '✗'; }

  // Compares the API release we answer as with aleph-vm's latest, as the monitor will.
  async function compareLatest() {
    var out = document.getElementById('latest-release');
    out.textContent = 'asking GitHub…';
    try {
      var res = await fetch('https://api.github.com/repos/aleph-im/aleph-vm/releases/latest');
      var tag = String((await res.json()).tag_name);
      // Compared here, as /status/check/version would (numeric parts), to spare the console its 403.
      out.textContent = compareVersions(apiVersion, tag) >= 0 ? 'aleph-vm ' + tag + ' is the latest release: up to date.' : 'aleph-vm ' + tag + ' is out: set node.aleph_vm_version once aleph-edge answers its API.';
    } catch (error) {
      out.textContent = 'GitHub could not be reached from this browser.';
    }
  }

  function compareVersions(a, b) {
    var x = a.replace(/^v/, '').split(/[^0-9.]/)[0].split('.').map(Number);
    var y = b.replace(/^v/, '').split(/[^0-9.]/)[0].split('.').map(Number);
    for (var i = 0; i < Math.max(x.length, y.length); i++) {
      var d = (x[i] || 0) - (y[i] || 0);
      if (d !== 0) return d;
    }
    return 0;
  }

  var SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function drawChart(history) {
    var chart = document.getElementById('usage-chart');
    var W = 720, H = 220, L = 40, R = 10, T = 10, B = 24;
    chart.replaceChildren();
    chart.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var now = Date.now();
    var span = 60 * 60 * 1000;
    var x = function (t) { return L + (W - L - R) * (1 - (now - t) / span); };
    var y = function (p) { return T + (H - T - B) * (1 - p / 100); };
    [0, 25, 50, 75, 100].forEach(function (p) {
      chart.append(svg('line', { x1: L, x2: W - R, y1: y(p), y2: y(p), class: 'grid' }));
      var label = svg('text', { x: L - 6, y: y(p) + 4, 'text-anchor': 'end', class: 'axis' });
      label.textContent = p + '%';
      chart.append(label);
    });
    [60, 45, 30, 15, 0].forEach(function (m) {
      var label = svg('text', { x: x(now - m * 60000), y: H - 6, 'text-anchor': 'middle', class: 'axis' });
      label.textContent = m === 0 ? 'now' : '-' + m + ' min';
      chart.append(label);
    });
    var series = [
      { name: 'cpu', cls: 'line-cpu', value: function (s) { return s.cpu_percent; } },
      { name: 'memory', cls: 'line-mem', value: function (s) { return s.mem_total_kB ? 100 * (s.mem_total_kB - s.mem_available_kB) / s.mem_total_kB : null; } },
    ];
    var points = 0;
    series.forEach(function (serie) {
      var pts = history.samples
        .map(function (s) { return { t: Date.parse(s.timestamp), v: serie.value(s) }; })
        .filter(function (p) { return p.v !== null && now - p.t <= span; });
      points += pts.length;
      if (pts.length > 1) {
        chart.append(svg('polyline', { class: serie.cls, points: pts.map(function (p) { return x(p.t).toFixed(1) + ',' + y(p.v).toFixed(1); }).join(' ') }));
      }
      pts.forEach(function (p) {
        chart.append(svg('circle', { class: serie.cls + ' point', 'data-series': serie.name, cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: pts.length > 1 ? 1.5 : 3 }));
      });
      var last = pts[pts.length - 1];
      document.getElementById('now-' + serie.name).textContent = last ? last.v.toFixed(1) + '%' : '–';
    });
    chart.setAttribute('data-points', String(points));
  }

  function ago(iso) {
    if (!iso) return '–';
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago';
  }

  function fillTable(id, rows, empty) {
    var tbody = document.querySelector('#' + id + ' tbody');
    tbody.replaceChildren();
    if (rows.length === 0) tbody.append(el('tr', {}, [el('td', { colspan: '8', class: 'empty' }, [empty])]));
    rows.forEach(function (cells) { tbody.append(el('tr', {}, cells.map(function (c) { return c instanceof Node ? el('td', {}, [c]) : el('td', {}, [c]); }))); });
  }

  async function refresh() {
    var results = await Promise.allSettled([
      getJson('/about/usage/history').then(function (r) { drawChart(r.data); }),
      getJson('/about/executions/states').then(function (r) {
        fillTable('executions', r.data.map(function (e) {
          return [
            el('a', { href: '/vm/' + e.hash + '/', title: e.hash }, [e.hash.slice(0, 12) + '…']),
            e.name || '–',
            el('span', { class: 'state state-' + e.state }, [e.state]),
            e.driver, ago(e.started_at), e.requests + (e.in_flight ? ' (' + e.in_flight + ' now)' : ''), ago(e.last_request_at), e.memory_mib + ' MiB',
          ];
        }), 'No program runs now: one boots on its first request.');
        document.getElementById('executions').setAttribute('data-rows', String(r.data.length));
      }),
      getJson('/about/tls/certificates').then(function (r) {
        fillTable('certificates', r.data.map(function (c) {
          var days = Math.floor((Date.parse(c.not_after) - Date.now()) / 86400000);
          return [
            c.host, c.source + (c.issuer ? ' · ' + c.issuer : ''), c.not_after.slice(0, 10),
            el('span', { class: days < 0 ? 'expired' : days < 14 ? 'soon' : 'fine' }, [days < 0 ? 'expired' : days + ' days']),
            c.renewal_failures ? c.renewal_failures + ' failed renewals' : '–',
          ];
        }), 'No certificate issued yet.');
        document.getElementById('certificates').setAttribute('data-rows', String(r.data.length));
      }),
    ]);
    var failed = results.filter(function (r) { return r.status === 'rejected'; }).length;
    document.getElementById('refreshed').textContent = (failed ? failed + ' panel(s) could not refresh; ' : '') + 'updated ' + new Date().toLocaleTimeString();
    body.setAttribute('data-refreshed', String(Number(body.getAttribute('data-refreshed') || '0') + 1));
  }

  document.getElementById('compare-latest').addEventListener('click', compareLatest);
  // The checks may boot the diagnostic program: show it as it is once they are done.
  runChecks().then(refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
`;

export const PAGE_STYLE = String.raw`:root{--ok:#1a7f37;--fail:#cf222e;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--cpu:#0969da;--mem:#8250df}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:64rem;margin:1.5rem auto;padding:0 1rem;line-height:1.45;color:#1f2328}
header h1{margin:0 0 .25rem;font-size:1.5rem}
header p{margin:0;color:var(--muted)}
code{background:var(--bg);padding:0 .25em;border-radius:3px;word-break:break-all}
section{border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;margin:1rem 0}
section h2{font-size:1.1rem;margin:.1rem 0 .6rem}
.checks{list-style:none;padding:0;margin:0}
.checks li{display:grid;grid-template-columns:11rem 6.5rem 1fr;gap:.5rem;padding:.3rem 0;border-top:1px solid var(--bg);align-items:baseline}
.checks li:first-child{border-top:0}
.badge{display:inline-block;text-align:center;border-radius:1rem;padding:0 .6rem;font-size:.85rem;background:var(--bg);color:var(--muted)}
[data-state=ok] .badge{background:#dafbe1;color:var(--ok)}
[data-state=fail] .badge,[data-state=error] .badge{background:#ffebe9;color:var(--fail)}
[data-state=pending] .badge{animation:pulse 1.2s ease-in-out infinite}
@keyframes pulse{50%{opacity:.4}}
.detail{color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
svg#usage-chart{width:100%;height:auto;display:block}
.grid{stroke:var(--line);stroke-width:1}
.axis{fill:var(--muted);font-size:11px}
polyline{fill:none;stroke-width:2}
.line-cpu{stroke:var(--cpu);fill:var(--cpu)}
.line-mem{stroke:var(--mem);fill:var(--mem)}
polyline.line-cpu,polyline.line-mem{fill:none}
.legend span{margin-right:1.2rem}
.swatch-cpu{background:var(--cpu)}.swatch-mem{background:var(--mem)}
.legend i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{text-align:left;padding:.3rem .4rem;border-top:1px solid var(--bg)}
th{color:var(--muted);font-weight:600}
td.empty{color:var(--muted);font-style:italic}
.state{border-radius:1rem;padding:0 .5rem;background:var(--bg)}
.state-ready{background:#dafbe1;color:var(--ok)}
.state-starting{background:#fff8c5;color:#9a6700}
.state-draining,.state-stopping{background:#ffebe9;color:var(--fail)}
.soon{color:#9a6700;font-weight:600}.expired{color:var(--fail);font-weight:600}.fine{color:var(--ok)}
footer{color:var(--muted);font-size:.85rem;margin:1rem 0}
button{font:inherit;padding:.15rem .6rem}
`;
