// Cost of a config change: validateConfig, then a whole PUT {admin}/config (validate + store + apply) on one
// node without Redis, for 1k, 10k and 20k routes; and the cost of refusing 14k invalid routes.
// Also the longest /health answer while each PUT runs (the event loop must keep serving).
// `node --import tsx bench/config-validate.ts` (BENCH_SIZES=1000,10000 to pick sizes).
import Fastify from 'fastify'
import { request } from 'undici'
import { configIssues, validateConfig } from '../lib/config/index.js'
import gateway from '../plugins/gateway.js'

const TOKEN = 'bench-config-validate-token'
const sizes = (process.env.BENCH_SIZES ?? '1000,10000,20000').split(',').map(Number)
const PUT_ONLY = process.env.BENCH_PUT_ONLY === '1'

/** `n` routes over 10 upstreams, some with their own limits and failover. */
export function sharedDoc (n: number, invalid = false): Record<string, unknown> {
  const upstreams: Record<string, unknown> = {}
  for (let u = 0; u < 10; u++) upstreams[`u${u}`] = { targets: [{ id: `t${u}`, url: `http://127.0.0.1:${20000 + u}` }] }
  const routes = Array.from({ length: n }, (_, i) => {
    const r: Record<string, unknown> = { path: `/svc${i}/api`, upstream: `u${i % 10}` }
    if (i % 7 === 0) r.rateLimit = { algorithm: 'sliding_window', limit: 100, window: '1s' }
    if (i % 11 === 0) r.failover = { maxRetries: 1 }
    if (invalid) { r.strategy = 'nope'; r.path = `svc${i}`; r.rateLimit = { window: 0 } }
    return r
  })
  return { upstreams, routes }
}

const ms = (t0: number): number => Math.round(performance.now() - t0)

async function main (): Promise<void> {
  const c0 = performance.now()
  validateConfig(sharedDoc(1))
  console.log(`first validateConfig (compiles the schema): ${ms(c0)} ms`)
  for (const n of PUT_ONLY ? [] : sizes) {
    const doc = sharedDoc(n)
    const t0 = performance.now()
    validateConfig(doc)
    const validate = ms(t0)
    const t1 = performance.now()
    const issues = configIssues(sharedDoc(Math.round(n * 0.7), true))
    const invalid = ms(t1)
    console.log(`${n} routes: validateConfig ${validate} ms; ${Math.round(n * 0.7)} invalid routes refused in ${invalid} ms (${issues.length} issues reported)`)
  }
  const app = Fastify({ logger: false })
  await app.register(gateway, { node: { id: 'bench', port: 0 }, admin: { token: TOKEN }, ...sharedDoc(1) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  let version = app.cluster.config.version
  for (const n of sizes) {
    const body = JSON.stringify(sharedDoc(n))
    let worst = 0
    let done = false
    const poll = (async () => {
      while (!done) {
        const t = performance.now()
        await (await request(`${url}/health`)).body.text()
        worst = Math.max(worst, performance.now() - t)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })()
    const t0 = performance.now()
    const res = await request(`${url}/gateway/config`, {
      method: 'PUT', body, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'if-match': String(version) },
    })
    const text = await res.body.text()
    const put = ms(t0)
    done = true
    await poll
    if (res.statusCode !== 200) throw new Error(`PUT ${n}: ${res.statusCode} ${text.slice(0, 300)}`)
    version = (JSON.parse(text) as { version: number }).version
    console.log(`${n} routes: PUT (validate + apply) ${put} ms, ${(body.length / 1e6).toFixed(1)} MB body; slowest /health meanwhile ${Math.round(worst)} ms`)
  }
  await app.close()
}

await main()
