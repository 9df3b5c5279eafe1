// Route lookup cost: configured routes registered one by one in Fastify's router (find-my-way, `p` and `p/*`
// per route, as before config sync) against one `/*` catch-all plus the gateway's RouteTable (longest prefix).
// Alternating rounds in one process; ns per lookup (median of rounds). `node --import tsx bench/route-table.ts`
// (find-my-way is Fastify's router, installed with it.)
import { execSync } from 'node:child_process'
import FindMyWay from 'find-my-way'
import { RouteTable } from '../lib/routes/route-table.js'
import { COMMON_METHODS } from '../lib/routes/methods.js'

const METHODS = COMMON_METHODS
const noop = (): void => {}

function setups (n: number): { perRoute: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>, catchAll: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>, table: RouteTable, urls: string[] } {
  const paths = Array.from({ length: n }, (_, i) => i % 2 === 0 ? `/svc${i}` : `/svc${i - 1}/sub${i}`)
  const perRoute = FindMyWay()
  for (const p of paths) for (const url of [p, `${p}/*`]) perRoute.on([...METHODS], url, noop, { p })
  const catchAll = FindMyWay()
  catchAll.on([...METHODS], '/*', noop)
  const table = new RouteTable(paths.map((p) => ({ path: p, config: { p } })))
  const urls = paths.map((p, i) => i % 3 === 0 ? p : `${p}/items/${i}?q=1`)
  return { perRoute, catchAll, table, urls }
}

function round (fn: (url: string) => unknown, urls: string[], iters: number): number {
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < iters; i++) if (fn(urls[i % urls.length]) !== undefined) sink++
  const ns = Number(process.hrtime.bigint() - t0) / iters
  if (sink !== iters) throw new Error(`only ${sink} of ${iters} lookups matched`)
  return ns
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

console.log(`load: ${execSync('uptime').toString().trim()}`)
for (const n of [1, 10, 100]) {
  const s = setups(n)
  // the router gets the path without the query (as Fastify hands it), the table the URL as the request has it
  const before = (url: string): unknown => s.perRoute.find('GET', url.split('?')[0])?.store
  const after = (url: string): unknown => { s.catchAll.find('GET', url.split('?')[0]); return s.table.match('GET', url) }
  const a: number[] = []
  const b: number[] = []
  for (let r = 0; r < 5; r++) { round(before, s.urls, 100_000); round(after, s.urls, 100_000) }
  for (let r = 0; r < 10; r++) {
    a.push(round(before, s.urls, 300_000))
    b.push(round(after, s.urls, 300_000))
  }
  console.log(`${String(n).padStart(3)} routes: per-route router ${median(a).toFixed(0)} ns/lookup, catch-all + table ${median(b).toFixed(0)} ns/lookup (ratio ${(median(b) / median(a)).toFixed(2)})`)
}
console.log(`load: ${execSync('uptime').toString().trim()}`)
