// Three gateway nodes share one real Redis: exact budgets for every algorithm, window boundaries, GCRA.
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { startRedis } from './helpers/redis.js'
import { startUpstream } from './helpers/upstream.js'
import { burst, redisReady, send, sleep, startNodes, tally, type Answer, type Node } from './helpers/ratelimit-nodes.js'
import type { RateLimitRuleOptions } from '../lib/ratelimit/policy.js'

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const upstream = await startUpstream({ id: 'rl-up' })
t.teardown(async () => { await upstream.kill() })
const admin = new Redis(redis.port, '127.0.0.1', { lazyConnect: false })
t.teardown(() => { admin.disconnect() })

let seq = 0
/** Three nodes on one Redis; each test gets its own key space (cluster name). */
async function cluster (t: Test, rule: RateLimitRuleOptions, proxy = false): Promise<Node[]> {
  const { nodes, close } = await startNodes(3, {
    plugin: { redis: redis.url, clusterName: `rl-test-${++seq}`, storeTimeout: 2000, onStoreError: 'fail_closed' },
    rateLimit: rule,
    upstream: proxy ? upstream.url : undefined,
    routeFirst: (i) => i === 0, // node 0 declares its route before the plugin
  })
  t.teardown(close)
  await redisReady(nodes)
  return nodes
}

/** ms into the current `window` by Redis's clock (the scripts' clock). */
async function redisPhase (window: number): Promise<number> {
  const [s, us] = await admin.time()
  return (Number(s) * 1000 + Math.floor(Number(us) / 1000)) % window
}

for (const algorithm of ['fixed_window', 'sliding_window', 'token_bucket'] as const) {
  t.test(`${algorithm}: 300 concurrent requests over three nodes against a limit of 50: exactly 50 pass`, async (t) => {
    // an hour-long window: no refill or window change during the burst
    const nodes = await cluster(t, { algorithm, limit: 50, window: 3_600_000 }, algorithm === 'sliding_window')
    const path = algorithm === 'sliding_window' ? '/api/x' : '/r'
    const answers = await burst(nodes, path, 300)
    t.same(tally(answers), { 200: 50, 429: 250 })
    const perNode = nodes.map((_, i) => answers.filter((a, j) => j % 3 === i && a.status === 200).length)
    t.equal(perNode.reduce((a, b) => a + b, 0), 50, `passed per node ${perNode.join('/')}`)
    const refused = answers.find((a) => a.status === 429)!
    t.ok(Number(refused.headers['retry-after']) >= 1)
    t.match(String(refused.headers.ratelimit), /;r=0;t=\d+$/)
  })
}

t.test('window boundary: fixed_window lets 2× through a boundary, sliding_window stays within its bound', async (t) => {
  const limit = 10
  const window = 2000
  const half = window / 2
  for (const algorithm of ['fixed_window', 'sliding_window'] as const) {
    const nodes = await cluster(t, { algorithm, limit, window })
    let result: { passed: number, span: number } | undefined
    for (let attempt = 0; attempt < 5 && result === undefined; attempt++) {
      // `limit` requests ~600 ms before a boundary (by Redis's clock), `limit` more right after it
      const phase = await redisPhase(window)
      await sleep((window - phase - 600 + window) % window)
      const t0 = Date.now()
      const before = await burst(nodes, '/r', limit)
      if (await redisPhase(window) < half) continue // a stall carried the burst past the boundary: try the next one
      await sleep(window - await redisPhase(window) + 50)
      const after = await burst(nodes, '/r', limit)
      if (await redisPhase(window) >= half) continue // the second burst must sit in the first half of its window
      const all: Answer[] = [...before, ...after]
      result = { passed: all.filter((a) => a.status === 200).length, span: Math.max(...all.map((a) => a.at)) - t0 }
      await sleep(2 * window) // the key cools down before the next algorithm
    }
    if (result === undefined) { t.fail('could not place two bursts around a boundary'); continue }
    if (algorithm === 'fixed_window') {
      t.equal(result.passed, 2 * limit, `fixed_window: ${result.passed} passed within ${result.span} ms`)
    } else {
      // documented bound: in any span of d <= window, at most limit * (1 + d / window)
      const bound = Math.floor(limit * (1 + Math.min(result.span, window) / window))
      t.ok(result.passed >= limit && result.passed <= bound, `sliding_window: ${result.passed} passed within ${result.span} ms (bound ${bound})`)
    }
  }
})

t.test('token_bucket (GCRA): a burst of `limit`, then the steady rate of limit per window', async (t) => {
  // 10 per 2 s: one unit every 200 ms
  const nodes = await cluster(t, { algorithm: 'token_bucket', limit: 10, window: 2000 })
  const first = await burst(nodes, '/r', 20)
  const passed = first.filter((a) => a.status === 200).length
  t.ok(passed >= 10 && passed <= 11, `burst: ${passed} of 20 passed (bucket of 10)`)
  const refused = first.find((a) => a.status === 429)!
  t.equal(refused.headers['retry-after'], '1', 'the next unit is <= 200 ms away')

  // slower than the rate (one every 250 ms): every request passes
  await sleep(300)
  const slow: Answer[] = []
  for (let i = 0; i < 8; i++) {
    slow.push(await send(nodes[i % 3].url + '/r'))
    await sleep(250)
  }
  t.same(tally(slow), { 200: 8 }, 'below the rate nothing is refused')

  // four times the rate for ~3 s: about one in four passes
  await sleep(2000) // refill fully
  await burst(nodes, '/r', 10) // and empty the bucket again
  const t0 = Date.now()
  const fast: Answer[] = []
  for (let i = 0; i < 60; i++) {
    fast.push(await send(nodes[i % 3].url + '/r'))
    await sleep(50)
  }
  const elapsed = Date.now() - t0
  const ok = fast.filter((a) => a.status === 200).length
  const expected = elapsed / 200
  t.ok(ok >= Math.floor(expected) - 2 && ok <= Math.ceil(expected) + 1, `steady: ${ok} passed in ${elapsed} ms (rate says ${expected.toFixed(1)})`)
})

t.test('keys over real HTTP: a forged X-Forwarded-For does not change the key; header keys get separate budgets', async (t) => {
  const nodes = await cluster(t, { algorithm: 'fixed_window', limit: 5, window: 3_600_000 })
  const forged: Answer[] = []
  for (let i = 0; i < 10; i++) forged.push(await send(nodes[i % 3].url + '/r', { 'x-forwarded-for': `203.0.113.${i}` }))
  t.same(tally(forged), { 200: 5, 429: 5 })

  const byKey = await cluster(t, { algorithm: 'fixed_window', limit: 5, window: 3_600_000, key: 'header:x-api-key' })
  for (const key of ['alpha', 'beta', 'gamma']) {
    t.same(tally(await burst(byKey, '/r', 8, { 'x-api-key': key })), { 200: 5, 429: 3 }, `key ${key}: its own 5`)
  }
  const keys = await admin.keys(`rl-test-${seq}:rl:*`)
  t.ok(keys.length >= 3 && keys.every((k) => !/alpha|beta|gamma/.test(k)), `hashed keys: ${keys.slice(0, 3).join(' ')}`)
})

t.test('lease mode over three nodes: admissions stay within limit ± nodes × slice (fixed_window: never above the limit)', async (t) => {
  const slice = 5
  for (const algorithm of ['fixed_window', 'sliding_window', 'token_bucket'] as const) {
    const nodes = await cluster(t, { algorithm, limit: 50, window: 3_600_000, mode: 'lease', leaseSize: slice })
    const answers = await burst(nodes, '/r', 300)
    const passed = answers.filter((a) => a.status === 200).length
    const high = algorithm === 'fixed_window' ? 50 : 50 + 3 * slice
    t.ok(passed >= 50 - 3 * slice && passed <= high, `${algorithm}: ${passed} passed (bound ${50 - 3 * slice}..${high})`)
    t.equal(passed + answers.filter((a) => a.status === 429).length, 300, 'every other request refused')
  }
})
