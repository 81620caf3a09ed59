// Weft dashboard: polls the viz API every 2 s and redraws the current view.
// Views are built once per route (so inputs keep focus) and updated in place.
'use strict';

const POLL_MS = 2000;
const state = { overview: null, routes: null, ns: '', view: null, sort: { key: 'name', dir: 1 }, filter: '', history: new Map() };
const HISTORY = 90; // polls kept per workload for the charts (3 minutes)

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

// Cells formatted as 'weft viz stat' prints them.
const fmtSR = (s) => (s && s.successRate != null ? (s.successRate * 100).toFixed(2) + '%' : '-');
const fmtRPS = (s) => (s && s.rps != null ? s.rps.toFixed(1) + 'rps' : '-');
const fmtMs = (v) => (v != null ? Math.round(v) + 'ms' : '-');
const fmtConn = (s) => (s && s.tcpConnections != null ? String(Math.round(s.tcpConnections)) : '-');
const srClass = (s) => {
  if (!s || s.successRate == null) return '';
  return s.successRate >= 0.99 ? 'sr-good' : s.successRate >= 0.9 ? 'sr-warn' : 'sr-bad';
};
const srColor = (sr) => (sr == null ? '#9aa5bd' : sr >= 0.99 ? '#2b8a3e' : sr >= 0.9 ? '#e67700' : '#c92a2a');
const meshed = (r) => (r.totalPods ? `${r.meshedPods}/${r.totalPods}` : '-');

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'deploy' && parts.length >= 3) return { name: 'deploy', ns: parts[1], deploy: parts[2] };
  if (['workloads', 'topology', 'tap'].includes(parts[0])) return { name: parts[0] };
  return { name: 'namespaces' };
}

// ---- tables ----

const statCols = [
  { key: 'meshed', label: 'MESHED', num: true, get: (r) => r.meshedPods, fmt: meshed },
  { key: 'successRate', label: 'SUCCESS', num: true, get: (r) => r.successRate ?? -1, fmt: fmtSR, cls: srClass },
  { key: 'rps', label: 'RPS', num: true, get: (r) => r.rps ?? -1, fmt: fmtRPS, cls: () => 'rps' },
  { key: 'p50', label: 'LATENCY_P50', num: true, get: (r) => r.latencyMsP50 ?? -1, fmt: (r) => fmtMs(r.latencyMsP50) },
  { key: 'p95', label: 'LATENCY_P95', num: true, get: (r) => r.latencyMsP95 ?? -1, fmt: (r) => fmtMs(r.latencyMsP95) },
  { key: 'p99', label: 'LATENCY_P99', num: true, get: (r) => r.latencyMsP99 ?? -1, fmt: (r) => fmtMs(r.latencyMsP99) },
  { key: 'tcp', label: 'TCP_CONN', num: true, get: (r) => r.tcpConnections ?? -1, fmt: fmtConn },
];

function tableHTML(cols, rows, opts = {}) {
  if (!rows.length) return `<div class="empty">${esc(opts.empty || 'Nothing yet.')}</div>`;
  const sort = state.sort;
  const col = cols.find((c) => c.key === sort.key);
  if (col && opts.sortable !== false) {
    rows = rows.slice().sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
  }
  const head = cols.map((c) => `<th data-key="${c.key}" class="${c.num ? 'num' : ''}">${esc(c.label)}${sort.key === c.key ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''}</th>`).join('');
  const body = rows.map((r) => `<tr data-name="${esc(r.name ?? '')}">` + cols.map((c) =>
    `<td class="${c.num ? 'num ' : ''}${c.cls ? c.cls(r) : ''}">${c.html ? c.html(r) : esc(c.fmt ? c.fmt(r) : c.get(r))}</td>`).join('') + '</tr>').join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function bindSort(root, rerender) {
  root.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-key]');
    if (!th) return;
    const key = th.dataset.key;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === 'name' ? 1 : -1) };
    rerender();
  });
}

const deployLink = (ns, name) => `<a href="#/deploy/${encodeURIComponent(ns)}/${encodeURIComponent(name)}">${esc(name)}</a>`;

// ---- views ----

const views = {
  namespaces: {
    build(root) {
      root.innerHTML = `<h1>Namespaces</h1><div class="panel" id="ns-table"></div>
        <h2>Topology</h2><div class="panel" id="topology"></div>`;
      bindSort($('#ns-table'), () => this.update());
    },
    update() {
      const o = state.overview;
      const cols = [{ key: 'name', label: 'NAMESPACE', get: (r) => r.name,
        html: (r) => `<a href="#/workloads" data-ns="${esc(r.name)}">${esc(r.name)}</a>` }, ...statCols];
      $('#ns-table').innerHTML = tableHTML(cols, o.namespaces, { empty: 'No pods in the store yet. Start a mesh with weft up.' });
      $('#ns-table').querySelectorAll('a[data-ns]').forEach((a) => a.addEventListener('click', () => setNamespace(a.dataset.ns)));
      drawTopology($('#topology'), o.deployments, o.edges);
    },
  },
  workloads: {
    build(root) {
      root.innerHTML = `<h1>Workloads${state.ns ? ' in ' + esc(state.ns) : ''}</h1>
        <input class="filter" id="filter" placeholder="Filter by name" value="${esc(state.filter)}">
        <div class="panel" id="workloads"></div>`;
      $('#filter').addEventListener('input', (e) => { state.filter = e.target.value; this.update(); });
      bindSort($('#workloads'), () => this.update());
    },
    update() {
      const o = state.overview;
      const f = state.filter.toLowerCase();
      const rows = o.deployments.filter((r) => !f || r.name.toLowerCase().includes(f));
      const cols = [
        ...(state.ns ? [] : [{ key: 'namespace', label: 'NAMESPACE', get: (r) => r.namespace }]),
        { key: 'name', label: 'DEPLOYMENT', get: (r) => r.name, html: (r) => deployLink(r.namespace, r.name) },
        ...statCols,
      ];
      $('#workloads').innerHTML = tableHTML(cols, rows, { empty: 'No deployments.' });
    },
  },
  topology: {
    build(root) {
      root.innerHTML = `<h1>Topology${state.ns ? ' of ' + esc(state.ns) : ''}</h1>
        <p style="color:var(--muted);margin-top:-8px">Who calls whom; edges show success rate and requests per second over the window.</p>
        <div class="panel" id="topology"></div>`;
    },
    update() { drawTopology($('#topology'), state.overview.deployments, state.overview.edges); },
  },
  tap: {
    build(root) {
      root.innerHTML = `<h1>Live tap</h1>${tapPanelHTML(true)}`;
      bindTap(root, null);
    },
    update() {
      showTap();
      const sel = $('#tap-resource');
      const names = state.overview.tapDeployments || [];
      if (sel && sel.dataset.names !== names.join()) {
        const cur = sel.value;
        sel.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join('');
        sel.dataset.names = names.join();
        if (names.includes(cur)) sel.value = cur;
      }
    },
  },
  deploy: {
    build(root, rt) {
      root.innerHTML = `<h1>deploy/${esc(rt.deploy)} <span class="badge">${esc(rt.ns)}</span></h1>
        <div class="cards" id="cards"></div>
        <div class="charts">
          <div class="card"><div class="label">Success rate</div><div id="chart-sr"></div></div>
          <div class="card"><div class="label">Requests per second</div><div id="chart-rps"></div></div>
          <div class="card"><div class="label">Latency p99</div><div id="chart-p99"></div></div>
        </div>
        <div class="grid2">
          <div><h2>Inbound (callers)</h2><div class="panel" id="inbound"></div></div>
          <div><h2>Outbound (callees)</h2><div class="panel" id="outbound"></div></div>
        </div>
        <h2>Routes</h2><div class="panel" id="routes"></div>
        <h2>Pods</h2><div class="panel" id="pods"></div>
        <h2>Neighbourhood</h2><div class="panel" id="topology"></div>
        <h2>Live tap</h2>${tapPanelHTML(false)}`;
      bindTap(root, rt);
    },
    update(rt) {
      showTap(rt);
      const o = state.overview;
      const me = o.deployments.find((r) => r.namespace === rt.ns && r.name === rt.deploy) || { meshedPods: 0, totalPods: 0 };
      const cards = [['Meshed', meshed(me)], ['Success', fmtSR(me)], ['RPS', fmtRPS(me)], ['P50', fmtMs(me.latencyMsP50)],
        ['P95', fmtMs(me.latencyMsP95)], ['P99', fmtMs(me.latencyMsP99)], ['TCP', fmtConn(me)]];
      $('#cards').innerHTML = cards.map(([l, v]) => `<div class="card"><div class="label">${l}</div><div class="value">${esc(v)}</div></div>`).join('');
      const h = state.history.get(`${rt.ns}/${rt.deploy}`) || [];
      $('#chart-sr').innerHTML = chart(h, 'sr', { color: '#2b8a3e', min: 0, max: 1, fmt: (v) => (v * 100).toFixed(0) + '%' });
      $('#chart-rps').innerHTML = chart(h, 'rps', { min: 0, fmt: (v) => v.toFixed(1) + 'rps' });
      $('#chart-p99').innerHTML = chart(h, 'p99', { color: '#e67700', min: 0, fmt: (v) => Math.round(v) + 'ms' });
      const edgeCols = (which) => [
        { key: 'name', label: which === 'in' ? 'FROM' : 'TO', get: (e) => e.name, html: (e) => deployLink(e.ns, e.name) },
        { key: 'successRate', label: 'SUCCESS', num: true, get: (e) => e.successRate ?? -1, fmt: fmtSR, cls: srClass },
        { key: 'rps', label: 'RPS', num: true, get: (e) => e.rps ?? -1, fmt: fmtRPS },
        { key: 'p99', label: 'LATENCY_P99', num: true, get: (e) => e.latencyMsP99 ?? -1, fmt: (e) => fmtMs(e.latencyMsP99) },
        { key: 'secured', label: 'SECURED', get: (e) => e.secured, fmt: (e) => (e.secured ? '√' : '×') },
      ];
      const inb = o.edges.filter((e) => e.dst === rt.deploy && e.dstNamespace === rt.ns).map((e) => ({ ...e, name: e.src, ns: e.srcNamespace }));
      const outb = o.edges.filter((e) => e.src === rt.deploy && e.srcNamespace === rt.ns).map((e) => ({ ...e, name: e.dst, ns: e.dstNamespace }));
      $('#inbound').innerHTML = tableHTML(edgeCols('in'), inb, { empty: 'No meshed callers in the window.', sortable: false });
      $('#outbound').innerHTML = tableHTML(edgeCols('out'), outb, { empty: 'No calls to meshed workloads in the window.', sortable: false });
      const routeCols = [
        { key: 'route', label: 'ROUTE', get: (r) => r.route },
        { key: 'service', label: 'SERVICE', get: (r) => r.service },
        { key: 'successRate', label: 'SUCCESS', num: true, get: (r) => r.effective.successRate, fmt: (r) => fmtSR(r.effective), cls: (r) => srClass(r.effective) },
        { key: 'rps', label: 'RPS', num: true, get: (r) => r.effective.rps, fmt: (r) => fmtRPS(r.effective) },
        { key: 'p50', label: 'LATENCY_P50', num: true, get: (r) => r.effective.latencyMsP50, fmt: (r) => fmtMs(r.effective.latencyMsP50) },
        { key: 'p95', label: 'LATENCY_P95', num: true, get: (r) => r.effective.latencyMsP95, fmt: (r) => fmtMs(r.effective.latencyMsP95) },
        { key: 'p99', label: 'LATENCY_P99', num: true, get: (r) => r.effective.latencyMsP99, fmt: (r) => fmtMs(r.effective.latencyMsP99) },
      ];
      $('#routes').innerHTML = tableHTML(routeCols, state.routes || [], { empty: 'No inbound requests in the window.', sortable: false });
      const pods = o.pods.filter((p) => p.namespace === rt.ns && p.name.startsWith(rt.deploy + '-'));
      const podCols = [{ key: 'name', label: 'POD', get: (r) => r.name }, { key: 'status', label: 'STATUS', get: (r) => r.status }, ...statCols];
      $('#pods').innerHTML = tableHTML(podCols, pods, { empty: 'No pods.', sortable: false });
      const near = new Set([rt.deploy, ...inb.map((e) => e.name), ...outb.map((e) => e.name)]);
      const edges = o.edges.filter((e) => (e.src === rt.deploy && e.srcNamespace === rt.ns) || (e.dst === rt.deploy && e.dstNamespace === rt.ns));
      drawTopology($('#topology'), o.deployments.filter((d) => near.has(d.name)), edges, `${rt.ns}/${rt.deploy}`);
    },
  },
};

// ---- charts: each workload's recent golden metrics, drawn as SVG ----

function record(rows) {
  const now = Date.now();
  for (const r of rows) {
    const k = `${r.namespace}/${r.name}`;
    const h = state.history.get(k) || [];
    h.push({ t: now, rps: r.rps, sr: r.successRate, p99: r.latencyMsP99 });
    while (h.length > HISTORY) h.shift();
    state.history.set(k, h);
  }
}

// chart draws one series as a line with its last value; null values break
// the line.
function chart(points, key, { color = '#3b5bdb', fmt = (v) => v, min = null, max = null } = {}) {
  const W = 300, H = 70, P = 4;
  const vals = points.map((p) => p[key]).filter((v) => v != null);
  if (vals.length < 2) return `<div class="chart-empty">collecting…</div>`;
  const lo = min ?? Math.min(...vals), hi = Math.max(max ?? -Infinity, ...vals);
  const span = hi - lo || 1;
  const x = (i) => P + (i * (W - 2 * P)) / (HISTORY - 1);
  const y = (v) => H - P - ((v - lo) / span) * (H - 2 * P);
  const off = HISTORY - points.length;
  let d = '', pen = false;
  points.forEach((p, i) => {
    const v = p[key];
    if (v == null) { pen = false; return; }
    d += `${pen ? 'L' : 'M'}${x(i + off).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none"><path d="${d}" fill="none" stroke="${color}" stroke-width="2" vector-effect="non-scaling-stroke"/></svg>
    <div class="chart-axis"><span>${esc(fmt(lo))}</span><span>${esc(fmt(hi))}</span></div>`;
}

// ---- live tap: server-sent events from /api/v1/tap ----

const tap = { es: null, rows: new Map() };

function tapPanelHTML(pickResource) {
  return `<div class="note" id="tap-note" hidden>Live tap is unavailable: no proxy serves the tap API
      (pods carry no weft.io/tap-addr annotation). Golden metrics, routes and topology work without it.</div>
    <div id="tap-panel" hidden>
      <form id="tap-form" class="tapform">
        ${pickResource ? '<select id="tap-resource" aria-label="deployment"></select>' : ''}
        <input id="tap-path" placeholder="path prefix, e.g. /api">
        <select id="tap-method"><option value="">any method</option><option>GET</option><option>POST</option><option>PUT</option><option>DELETE</option></select>
        <button id="tap-start" type="submit">Start</button>
        <button id="tap-stop" type="button" disabled>Stop</button>
        <span id="tap-state" class="status"></span>
      </form>
      <div class="panel"><table><thead><tr><th>DIR</th><th>FROM</th><th>TO</th><th>METHOD</th><th>PATH</th>
        <th class="num">STATUS</th><th class="num">LATENCY</th></tr></thead><tbody id="tap-rows"></tbody></table></div>
    </div>`;
}

function showTap(rt) {
  const on = rt ? (state.overview.tapDeployments || []).includes(`${rt.ns}/${rt.deploy}`) : !!state.overview.tap;
  const note = $('#tap-note'), panel = $('#tap-panel');
  if (note) note.hidden = on;
  if (panel) panel.hidden = !on;
}

function stopTap() {
  if (tap.es) { tap.es.close(); tap.es = null; }
  const start = $('#tap-start'), stop = $('#tap-stop');
  if (start) start.disabled = false;
  if (stop) stop.disabled = true;
}

function bindTap(root, rt) {
  stopTap();
  const form = $('#tap-form', root);
  if (!form) return;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    stopTap();
    let ns, name;
    if (rt) { ns = rt.ns; name = rt.deploy; } else { [ns, name] = ($('#tap-resource').value || '/').split('/'); }
    const q = new URLSearchParams({ resource: `deploy/${name}`, namespace: ns, path: $('#tap-path').value, method: $('#tap-method').value });
    tap.rows = new Map();
    $('#tap-rows').innerHTML = '';
    tap.es = new EventSource(`/api/v1/tap?${q}`);
    $('#tap-start').disabled = true;
    $('#tap-stop').disabled = false;
    $('#tap-state').textContent = `tapping deploy/${name}…`;
    tap.es.onmessage = (m) => addTapLine(JSON.parse(m.data));
    tap.es.addEventListener('error', (m) => {
      $('#tap-state').textContent = m.data ? JSON.parse(m.data).error : 'tap ended';
      stopTap();
    });
  });
  $('#tap-stop', root).addEventListener('click', () => { stopTap(); $('#tap-state').textContent = 'stopped'; });
}

// addTapLine keeps one table row per request, filled in as its response
// and end arrive; the newest 200 requests are kept.
function addTapLine(l) {
  const key = `${l.pod}/${l.id}`;
  let tr = tap.rows.get(key);
  if (l.type === 'req') {
    tr = document.createElement('tr');
    tr.className = 'tap-row';
    tr.title = l.line;
    const from = l.srcName || l.src, to = l.dstName || (l.proxy === 'in' ? l.pod : l.dst);
    tr.innerHTML = `<td>${l.proxy === 'in' ? 'IN' : 'OUT'}</td><td>${esc(from)}</td><td>${esc(to)}</td><td>${esc(l.method)}</td>
      <td>${esc(l.path)}</td><td class="num status">…</td><td class="num latency"></td>`;
    tap.rows.set(key, tr);
    const body = $('#tap-rows');
    body.prepend(tr);
    while (body.children.length > 200) { const last = body.lastElementChild; tap.rows.forEach((v, k) => { if (v === last) tap.rows.delete(k); }); last.remove(); }
    return;
  }
  if (!tr) return;
  if (l.type === 'rsp') {
    const td = tr.querySelector('.status');
    td.textContent = l.status;
    td.className = 'num status ' + (l.status >= 500 ? 'sr-bad' : 'sr-good');
    tr.querySelector('.latency').textContent = l.latencyUs >= 1000 ? Math.round(l.latencyUs / 1000) + 'ms' : l.latencyUs + 'µs';
  } else if (l.type === 'end') {
    if (l.grpcStatus && l.grpcStatus !== 'OK') tr.querySelector('.status').textContent += ` ${l.grpcStatus}`;
    if (l.resetError != null) tr.querySelector('.status').textContent = `reset ${l.resetError}`;
    tap.rows.delete(key);
  }
}

// ---- topology: layered layout in SVG ----

function drawTopology(el, deployments, edges, selected) {
  const id = (ns, n) => `${ns}/${n}`;
  const nodes = new Map();
  for (const e of edges) {
    nodes.set(id(e.srcNamespace, e.src), { ns: e.srcNamespace, name: e.src });
    nodes.set(id(e.dstNamespace, e.dst), { ns: e.dstNamespace, name: e.dst });
  }
  if (!nodes.size) { el.innerHTML = '<div class="empty">No traffic between meshed workloads in the window.</div>'; return; }
  const stat = new Map(deployments.map((d) => [id(d.namespace, d.name), d]));
  const out = new Map([...nodes.keys()].map((k) => [k, []]));
  const indeg = new Map([...nodes.keys()].map((k) => [k, 0]));
  for (const e of edges) {
    const s = id(e.srcNamespace, e.src), d = id(e.dstNamespace, e.dst);
    if (s !== d) { out.get(s).push(d); indeg.set(d, indeg.get(d) + 1); }
  }
  // Longest path from the roots; back edges (cycles) are ignored.
  const layer = new Map(), onStack = new Set();
  const visit = (k) => {
    if (layer.has(k)) return layer.get(k);
    onStack.add(k);
    let l = 0;
    for (const [s, ds] of out) if (ds.includes(k) && !onStack.has(s)) l = Math.max(l, visit(s) + 1);
    onStack.delete(k);
    layer.set(k, l);
    return l;
  };
  [...nodes.keys()].sort().forEach(visit);
  const layers = [];
  for (const [k, l] of layer) (layers[l] ||= []).push(k);
  // Order each layer by the mean position of its callers (one sweep).
  const pos = new Map();
  layers.forEach((ks, li) => {
    if (li > 0) {
      const bary = (k) => {
        const ps = edges.filter((e) => id(e.dstNamespace, e.dst) === k).map((e) => pos.get(id(e.srcNamespace, e.src))).filter((p) => p != null);
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 1e9;
      };
      ks.sort((a, b) => bary(a) - bary(b) || a.localeCompare(b));
    } else ks.sort();
    ks.forEach((k, i) => pos.set(k, i));
  });
  const W = 170, H = 46, GX = 130, GY = 28, PAD = 20;
  const rows = Math.max(...layers.map((l) => l.length));
  const width = PAD * 2 + layers.length * W + (layers.length - 1) * GX;
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const xy = new Map();
  layers.forEach((ks, li) => {
    const off = (rows - ks.length) * (H + GY) / 2;
    ks.forEach((k, i) => xy.set(k, { x: PAD + li * (W + GX), y: PAD + off + i * (H + GY) }));
  });
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
    <path d="M0,0 L10,5 L0,10 z" fill="#7c869c"/></marker></defs>`;
  for (const e of edges) {
    const a = xy.get(id(e.srcNamespace, e.src)), b = xy.get(id(e.dstNamespace, e.dst));
    const color = srColor(e.successRate);
    let d, lx, ly;
    if (a === b) {
      d = `M${a.x + W - 30},${a.y} C${a.x + W},${a.y - 40} ${a.x + W + 30},${a.y} ${a.x + W},${a.y + 12}`;
      lx = a.x + W + 8; ly = a.y - 18;
    } else {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const back = x2 <= x1;
      const c = back ? 80 : (x2 - x1) / 2;
      d = back ? `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + c} ${b.x + W / 2},${b.y + H + c} ${b.x + W / 2},${b.y + H}`
        : `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2 - 2},${y2}`;
      lx = back ? (a.x + b.x + W) / 2 : (x1 + x2) / 2; ly = back ? Math.max(a.y, b.y) + H + c * 0.75 : (y1 + y2) / 2 - 6;
    }
    const w = 1.2 + Math.min(4, Math.log10(1 + (e.rps || 0)) * 1.5);
    svg += `<g class="edge" data-src="${esc(e.src)}" data-dst="${esc(e.dst)}"><path d="${d}" stroke="${color}" stroke-width="${w.toFixed(1)}" marker-end="url(#arrow)"/>
      <text x="${lx}" y="${ly}" text-anchor="middle" fill="${color}">${esc(fmtSR(e))} · ${esc(fmtRPS(e))}</text></g>`;
  }
  for (const [k, n] of nodes) {
    const p = xy.get(k), s = stat.get(k);
    const label = n.name.length > 22 ? n.name.slice(0, 21) + '…' : n.name;
    svg += `<g class="node${k === selected ? ' selected' : ''}" data-ns="${esc(n.ns)}" data-name="${esc(n.name)}" transform="translate(${p.x},${p.y})">
      <title>${esc(k)}</title><rect width="${W}" height="${H}" rx="8"/>
      <circle cx="14" cy="${H / 2}" r="5" fill="${srColor(s ? s.successRate : null)}"/>
      <text x="26" y="19">${esc(label)}</text>
      <text class="sub" x="26" y="35">${esc(n.ns)} · ${esc(fmtRPS(s))}</text></g>`;
  }
  el.innerHTML = svg + '</svg>';
  el.querySelectorAll('g.node').forEach((g) => g.addEventListener('click', () => {
    location.hash = `#/deploy/${encodeURIComponent(g.dataset.ns)}/${encodeURIComponent(g.dataset.name)}`;
  }));
}

// ---- plumbing ----

function setNamespace(ns) {
  state.ns = ns;
  $('#ns-select').value = ns;
  state.view = null;
  refresh();
}

function route() {
  const rt = parseRoute();
  document.querySelectorAll('header nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === rt.name));
  return rt;
}

function render() {
  if (!state.overview) return;
  const rt = route();
  const key = JSON.stringify(rt) + state.ns;
  const v = views[rt.name];
  if (state.view !== key) {
    state.view = key;
    v.build($('#view'), rt);
  }
  v.update(rt);
}

async function fetchJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function refresh() {
  const status = $('#status');
  try {
    const rt = parseRoute();
    const ns = rt.name === 'deploy' ? '' : state.ns;
    state.overview = await fetchJSON(`/api/v1/overview?namespace=${encodeURIComponent(ns)}`);
    record(state.overview.deployments);
    if (rt.name === 'deploy') {
      const q = new URLSearchParams({ resource: `deploy/${rt.deploy}`, namespace: rt.ns });
      state.routes = (await fetchJSON(`/api/v1/routes?${q}`)).routes;
    }
    const sel = $('#ns-select');
    const names = state.overview.namespaces.map((n) => n.name);
    const have = [...sel.options].map((o) => o.value).slice(1);
    if (names.join() !== have.join()) {
      sel.innerHTML = '<option value="">all</option>' + names.map((n) => `<option>${esc(n)}</option>`).join('');
      sel.value = state.ns;
    }
    render();
    status.textContent = `updated ${new Date().toLocaleTimeString()} · window ${state.overview.windowSeconds}s`;
    status.classList.remove('error');
  } catch (e) {
    status.textContent = `viz API unreachable: ${e.message}`;
    status.classList.add('error');
  }
}

$('#ns-select').addEventListener('change', (e) => setNamespace(e.target.value));
window.addEventListener('hashchange', () => { stopTap(); state.view = null; refresh(); });
refresh();
setInterval(refresh, POLL_MS);
