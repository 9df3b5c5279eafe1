// The dashboard: one self-contained page (no CDN, no build step) that polls `{admin}/dashboard/data`
// every second with the admin token from sessionStorage in an Authorization header (never in a URL).
// The page holds no data itself, so it is served without the token; its inline script and style are
// allowed by hash in the Content-Security-Policy, and nothing else is.
import { createHash } from 'node:crypto'

const STYLE = `
:root { --bg:#0f1419; --panel:#182029; --line:#2a3540; --fg:#d7dee6; --dim:#8393a3; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --info:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; gap:16px; padding:10px 18px; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:15px; margin:0; font-weight:600; }
header .meta { color:var(--dim); flex:1; }
main { display:grid; grid-template-columns: 1fr 1fr; gap:14px; padding:14px 18px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size:12px; text-transform:uppercase; letter-spacing:.06em; color:var(--dim); margin:0 0 8px; font-weight:600; }
h3 { font-size:13px; margin:10px 0 4px; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:3px 8px 3px 0; border-bottom:1px solid var(--line); white-space:nowrap; }
th { color:var(--dim); font-weight:500; }
td.num, th.num { text-align:right; }
.pill { display:inline-block; padding:0 7px; border-radius:9px; font-size:11px; font-weight:600; }
.healthy, .ok, .closed, .resolved, .ready { color:var(--ok); }
.unhealthy, .open, .critical, .error, .firing { color:var(--bad); }
.unknown, .draining, .half_open, .warning { color:var(--warn); }
.info { color:var(--info); }
.dim { color:var(--dim); }
.kpis { display:flex; gap:22px; flex-wrap:wrap; }
.kpi b { display:block; font-size:20px; font-weight:600; }
.kpi span { color:var(--dim); font-size:11px; }
svg { width:100%; height:150px; display:block; }
form { display:flex; gap:8px; }
input { background:var(--bg); color:var(--fg); border:1px solid var(--line); border-radius:4px; padding:4px 8px; }
button { background:#238636; color:#fff; border:0; border-radius:4px; padding:4px 10px; cursor:pointer; }
button.quiet { background:transparent; border:1px solid var(--line); color:var(--dim); }
#login { max-width:420px; margin:80px auto; }
#err { color:var(--bad); margin-top:8px; min-height:1em; }
ul { margin:0; padding-left:16px; }
li { margin:2px 0; }
`

const SCRIPT = `
(() => {
  const KEY = 'fhg-admin-token'
  const base = location.pathname.replace(/\\/dashboard\\/?$/, '')
  const $ = (id) => document.getElementById(id)
  function h (tag, attrs, ...kids) {
    const el = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue
      if (k === 'class') el.className = v
      else el.setAttribute(k, v)
    }
    for (const k of kids.flat()) el.append(k instanceof Node ? k : document.createTextNode(k === null || k === undefined ? '' : String(k)))
    return el
  }
  const fmt = (v, d = 1) => v === null || v === undefined ? '–' : (Math.round(v * 10 ** d) / 10 ** d).toString()
  const pct = (v) => v === null || v === undefined ? '–' : fmt(v * 100, 2) + ' %'
  const ago = (iso) => { const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000); return s < 60 ? fmt(s, 0) + ' s ago' : fmt(s / 60, 0) + ' min ago' }
  let timer
  function showLogin (msg) {
    clearTimeout(timer)
    $('app').hidden = true
    $('login').hidden = false
    $('err').textContent = msg || ''
    $('token').focus()
  }
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault()
    sessionStorage.setItem(KEY, $('token').value)
    $('token').value = ''
    start()
  })
  $('logout').addEventListener('click', () => { sessionStorage.removeItem(KEY); showLogin() })
  function start () {
    if (!sessionStorage.getItem(KEY)) return showLogin()
    $('login').hidden = true
    $('app').hidden = false
    poll()
  }
  async function poll () {
    clearTimeout(timer)
    try {
      const res = await fetch(base + '/dashboard/data', { headers: { authorization: 'Bearer ' + sessionStorage.getItem(KEY) }, cache: 'no-store' })
      if (res.status === 401) { sessionStorage.removeItem(KEY); return showLogin('The token was refused.') }
      if (!res.ok) throw new Error('HTTP ' + res.status)
      render(await res.json())
      $('status').textContent = 'live · updated ' + new Date().toLocaleTimeString()
      $('status').className = 'meta'
    } catch (err) {
      $('status').textContent = 'no answer: ' + err.message + ' (retrying)'
      $('status').className = 'meta unhealthy'
    }
    timer = setTimeout(poll, 1000)
  }
  function render (d) {
    const m = d.metrics
    const t = m.totals
    $('cluster').textContent = d.cluster + ' · node ' + d.self + ' · evaluator ' + (d.alerts.evaluator || '–')
    const w = t.windows['1m']
    $('kpis').replaceChildren(
      kpi(t.nodes, 'nodes'),
      kpi(t.healthyTargets + ' / ' + t.targetsTotal, 'healthy targets'),
      kpi(fmt(w.requestRate, 1), 'req/s (1 min)'),
      kpi(pct(w.errorRate), 'errors (1 min)'),
      kpi(fmt(w.p99Ms, 1) + ' ms', 'p99 (1 min)'),
      kpi(t.totalRequests, 'requests served'),
    )
    $('nodes').replaceChildren(table(['node', 'address', 'status', 'config', 'CPU %', 'RSS MiB', 'lag p99 ms', 'in flight', 'requests', 'errors', 'seen'],
      m.nodes.map((n) => h('tr', { 'data-node': n.id },
        h('td', {}, n.id, n.id === d.self ? h('span', { class: 'dim' }, ' (this)') : ''), h('td', {}, n.address), h('td', { class: n.status }, n.status),
        h('td', { class: 'num' }, 'v' + n.configVersion), h('td', { class: 'num' }, fmt(n.cpuPercent)), h('td', { class: 'num' }, fmt(n.rssMb)),
        h('td', { class: 'num' }, fmt(n.eventLoopLagMs)), h('td', { class: 'num' }, n.inFlight), h('td', { class: 'num' }, n.totalRequests),
        h('td', { class: 'num' }, n.errorRequests), h('td', { class: 'dim' }, ago(n.lastSeen))))))
    const ups = Object.entries(m.upstreams)
    $('upstreams').replaceChildren(...(ups.length === 0 ? [h('p', { class: 'dim' }, 'No upstream.')] : ups.map(([name, u]) => upstreamBlock(name, u))))
    const a = d.alerts
    $('alerts').replaceChildren(
      a.firing.length === 0 ? h('p', { class: 'ok' }, 'No alert firing.') : table(['firing', 'severity', 'condition', 'value', 'since'],
        a.firing.map((f) => h('tr', { 'data-alert': f.rule }, h('td', { class: 'firing' }, f.rule + (f.upstream ? ' (' + f.upstream + ')' : '')), h('td', { class: f.severity }, f.severity),
          h('td', {}, f.when), h('td', { class: 'num' }, fmt(f.value, 4)), h('td', { class: 'dim' }, ago(f.since))))),
      h('h3', {}, 'Recent notifications'),
      a.recent.length === 0 ? h('p', { class: 'dim' }, 'None yet.') : h('ul', {}, a.recent.slice(0, 8).map((r) => h('li', {},
        h('span', { class: r.status }, r.status), ' ', r.rule, ' ', h('span', { class: r.severity }, r.severity), ' ', h('span', { class: 'dim' }, r.message + ' · ' + ago(r.endsAt || r.startsAt))))))
    const events = m.nodes.flatMap((n) => n.events.map((e) => ({ ...e, node: n.id }))).sort((x, y) => y.t - x.t).slice(0, 12)
    $('events').replaceChildren(events.length === 0 ? h('p', { class: 'dim' }, 'No failover or health event in the last 10 minutes.') : h('ul', {}, events.map((e) =>
      h('li', {}, h('span', { class: /open|unhealthy|exhausted|ejected|fallback/.test(e.type + (e.detail || '')) ? 'unhealthy' : 'healthy' }, e.type), ' ', e.upstream + (e.target ? '/' + e.target : ''), ' ',
        h('span', { class: 'dim' }, (e.detail || '') + ' · ' + e.node + ' · ' + new Date(e.t).toLocaleTimeString())))))
    chart(d.history)
  }
  function upstreamBlock (name, u) {
    const w = u.windows['1m']
    const rows = u.targets.flatMap((tg) => Object.entries(tg.byNode).map(([node, v], i) => targetRow(name, tg, node, v, i === 0)))
    const line = u.healthyTargets + '/' + u.targetsTotal + ' healthy · ' + fmt(w.requestRate) + ' req/s · errors ' + pct(w.errorRate) + ' · p99 ' + fmt(w.p99Ms) + ' ms'
    return h('div', { 'data-upstream': name },
      h('h3', {}, name, ' ', h('span', { class: 'dim' }, line)),
      table(['target', 'cluster view', 'node', 'status', 'ejected', 'circuit', 'in flight', 'latency ms'], rows))
  }
  function targetRow (name, tg, node, v, first) {
    const health = tg.healthy ? 'healthy' : 'unhealthy'
    return h('tr', first ? { 'data-target': name + '/' + tg.id, 'data-health': health } : {},
      h('td', {}, first ? tg.id : ''), h('td', { class: health }, first ? health : ''),
      h('td', { class: 'dim' }, node), h('td', { class: v.status }, v.status),
      h('td', { class: v.ejected ? 'unhealthy' : 'dim' }, v.ejected ? 'yes' : 'no'),
      h('td', { class: v.circuit }, v.circuit), h('td', { class: 'num' }, v.inFlight), h('td', { class: 'num' }, fmt(v.ewmaMs)))
  }
  function kpi (v, label) { return h('div', { class: 'kpi' }, h('b', {}, v), h('span', {}, label)) }
  function table (heads, rows) {
    return h('table', {}, h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))), h('tbody', {}, rows))
  }
  function chart (hist) {
    const svg = $('chart')
    const W = 600, H = 150, P = 24
    const pts = hist.slice(-300)
    const max = Math.max(1, ...pts.map((p) => p.rps))
    const x = (i) => P + (W - 2 * P) * (pts.length < 2 ? 1 : i / (pts.length - 1))
    const y = (v) => H - P - (H - 2 * P) * v / max
    const line = (k) => pts.map((p, i) => (i === 0 ? 'M' : 'L') + x(i).toFixed(1) + ' ' + y(p[k]).toFixed(1)).join(' ')
    const NS = 'http://www.w3.org/2000/svg'
    const el = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e }
    const txt = (x0, y0, s, fill) => { const e = el('text', { x: x0, y: y0, fill, 'font-size': '10' }); e.textContent = s; return e }
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H)
    svg.setAttribute('preserveAspectRatio', 'none')
    svg.replaceChildren(
      el('line', { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: '#2a3540' }),
      el('line', { x1: P, y1: P, x2: W - P, y2: P, stroke: '#2a3540', 'stroke-dasharray': '3 3' }),
      txt(2, P + 3, fmt(max, 1), '#8393a3'), txt(2, H - P + 3, '0', '#8393a3'),
      el('path', { d: line('rps'), fill: 'none', stroke: '#58a6ff', 'stroke-width': '1.5' }),
      el('path', { d: line('eps'), fill: 'none', stroke: '#f85149', 'stroke-width': '1.5' }),
      txt(P, H - 6, 'requests/s', '#58a6ff'), txt(P + 70, H - 6, 'errors/s', '#f85149'),
      txt(W - P - 110, H - 6, pts.length > 1 ? 'last ' + fmt((pts[pts.length - 1].t - pts[0].t) / 60000, 1) + ' min' : '', '#8393a3'))
  }
  start()
})()
`

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`

/** Content-Security-Policy of the page: its own inline script and style by hash, fetches to itself, nothing else. */
export const DASHBOARD_CSP = `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>fastify-ha-gateway · cluster</title>
<style>${STYLE}</style>
</head>
<body>
<div id="login" hidden>
  <section>
    <h2>fastify-ha-gateway dashboard</h2>
    <p class="dim">Admin token (kept in this tab's sessionStorage only):</p>
    <form id="login-form"><input id="token" type="password" autocomplete="off" placeholder="admin token" required><button type="submit">Open</button></form>
    <div id="err"></div>
  </section>
</div>
<div id="app" hidden>
  <header><h1>fastify-ha-gateway</h1><span id="cluster" class="dim"></span><span id="status" class="meta"></span><button id="logout" class="quiet" type="button">Forget token</button></header>
  <main>
    <section class="wide"><div id="kpis" class="kpis"></div></section>
    <section class="wide"><h2>Nodes</h2><div id="nodes"></div></section>
    <section><h2>Requests and errors per second</h2><svg id="chart" role="img" aria-label="requests and errors per second"></svg></section>
    <section><h2>Alerts</h2><div id="alerts"></div></section>
    <section class="wide"><h2>Upstreams and targets</h2><div id="upstreams"></div></section>
    <section class="wide"><h2>Recent failover and health events</h2><div id="events"></div></section>
  </main>
</div>
<script>${SCRIPT}</script>
</body>
</html>
`
