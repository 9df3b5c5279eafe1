// Each strategy against real upstream processes over loopback; targets are counted by the `id` each echoes.
import t from 'tap'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { startGateway, get } from './helpers/gateway.js'
import type { UpstreamSpec } from '../types/index.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(3, 's') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

const targets = (n: number, weights: number[] = []): UpstreamSpec['targets'] =>
  ups.slice(0, n).map((u, i) => ({ id: u.id, url: u.url, weight: weights[i] ?? 1 }))

/** Send `n` requests with `concurrency` in flight; returns the upstream id that answered each, in order. */
async function send (n: number, concurrency: number, req: (i: number) => Promise<string>): Promise<string[]> {
  const out: string[] = new Array(n)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++
      out[i] = await req(i)
    }
  }))
  return out
}

function count (ids: string[]): Record<string, number> {
  const c: Record<string, number> = {}
  for (const id of ids) c[id] = (c[id] ?? 0) + 1
  return c
}

async function idOf (url: string, headers?: Record<string, string>): Promise<string> {
  const res = await get(url, { headers })
  if (res.status !== 200) throw new Error(`${url}: status ${res.status}: ${res.text}`)
  return res.body.id as string
}

t.test('weighted_round_robin at 3:1 is exact over 400 sequential requests, without bursts', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { strategy: 'weighted_round_robin', targets: targets(2, [3, 1]) } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const ids = await send(400, 1, async () => await idOf(`${url}/wrr`))
  const c = count(ids)
  t.same(c, { [ups[0].id]: 300, [ups[1].id]: 100 }, 'exactly 300 / 100')
  let run = 0
  let longest = 0
  for (const id of ids) {
    run = id === ups[0].id ? run + 1 : 0
    longest = Math.max(longest, run)
  }
  t.ok(longest <= 3, `heavy target never gets 4 in a row (longest run ${longest})`)
  // Every window of 4 consecutive picks is one full cycle: 3 heavy, 1 light.
  for (let i = 0; i + 4 <= ids.length; i += 4) {
    const light = ids.slice(i, i + 4).filter((id) => id === ups[1].id).length
    if (light !== 1) { t.fail(`cycle at ${i} has ${light} light picks`); break }
  }
})

t.test('a route can override the upstream strategy (round_robin upstream, weighted_round_robin route)', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { strategy: 'round_robin', targets: targets(2, [3, 1]) } } },
    [{ prefix: '/rr', upstream: 'u' }, { prefix: '/wrr', upstream: 'u', strategy: 'weighted_round_robin' }])
  t.teardown(() => app.close())
  t.same(count(await send(40, 1, async () => await idOf(`${url}/rr/x`))), { [ups[0].id]: 20, [ups[1].id]: 20 }, 'round_robin ignores weight')
  t.same(count(await send(40, 1, async () => await idOf(`${url}/wrr/x`))), { [ups[0].id]: 30, [ups[1].id]: 10 }, 'route override is weighted')
})

t.test('least_connections favours the fast target when the other is slow', async (t) => {
  const [fast, slow] = ups
  await slow.control({ delay: 200 })
  t.teardown(async () => { await slow.control({ delay: 0 }) })
  const { app, url } = await startGateway({ upstreams: { u: { strategy: 'least_connections', targets: targets(2) } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const c = count(await send(200, 20, async () => await idOf(`${url}/lc`)))
  const share = (c[fast.id] ?? 0) / 200
  t.comment(`least_connections: fast ${c[fast.id] ?? 0}, slow ${c[slow.id] ?? 0}`)
  t.ok(share > 0.7, `fast target gets > 70 % (got ${(share * 100).toFixed(1)} %)`)
  t.ok((c[slow.id] ?? 0) > 0, 'the slow target is not starved entirely')
})

t.test('response_time sends 75 % or more to the faster target', async (t) => {
  const [fast, slow] = ups
  await slow.control({ delay: 40 })
  t.teardown(async () => { await slow.control({ delay: 0 }) })
  const { app, url } = await startGateway({ upstreams: { u: { strategy: 'response_time', targets: targets(2) } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  // Warm-up: each target gets a latency sample and a warm connection.
  await send(10, 2, async () => await idOf(`${url}/warm`))
  const c = count(await send(200, 2, async () => await idOf(`${url}/rt`)))
  const share = (c[fast.id] ?? 0) / 200
  t.comment(`response_time: fast ${c[fast.id] ?? 0}, slow ${c[slow.id] ?? 0}`)
  t.ok(share >= 0.75, `fast target gets >= 75 % (got ${(share * 100).toFixed(1)} %)`)
  // Only a comment: on a loaded machine the fast target's peak EWMA can spike close to the slow one's.
  t.comment(`EWMA ms: ${JSON.stringify(Object.fromEntries(app.loadBalancer.status().u.targets.map((s) => [s.id, s.ewmaMs])))}`)
})

t.test('consistent_hash on header:x-user-id is sticky and remaps minimally when a target leaves', async (t) => {
  const { app, url } = await startGateway({
    upstreams: { u: { strategy: 'consistent_hash', hashOn: 'header:x-user-id', targets: targets(3) } },
  }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const keys = Array.from({ length: 300 }, (_, i) => `user-${i}`)
  const pick = async (round: string): Promise<string[]> =>
    await send(keys.length, 10, async (i) => await idOf(`${url}/ch/${round}`, { 'x-user-id': keys[i] }))

  const before = await pick('a')
  const again = await pick('b')
  const third = await pick('c')
  const unstable = keys.filter((_, i) => before[i] !== again[i] || before[i] !== third[i])
  t.same(unstable, [], 'same key -> same target, every time')
  const owned = count(before)
  t.comment(`keys per target: ${JSON.stringify(owned)}`)
  for (const u of ups) t.ok((owned[u.id] ?? 0) > 0, `${u.id} owns some keys`)

  const removed = ups[1].id
  app.loadBalancer.removeTarget('u', removed)
  const after = await pick('d')
  const moved = keys.filter((_, i) => after[i] !== before[i])
  const movedFromOthers = keys.filter((_, i) => after[i] !== before[i] && before[i] !== removed)
  t.same(movedFromOthers, [], 'only keys owned by the removed target move')
  t.equal(moved.length, owned[removed], 'every key of the removed target moved')
  t.ok(moved.length <= keys.length * (1 / 3 + 0.05), `moved ${moved.length} of ${keys.length} <= 1/3 + 5 %`)
  t.notOk(after.includes(removed), 'the removed target gets nothing')
  const stillSticky = await pick('e')
  t.same(stillSticky, after, 'sticky after the change too')
})

t.test('random spreads over all targets', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { strategy: 'random', targets: targets(3) } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const c = count(await send(300, 4, async () => await idOf(`${url}/rnd`)))
  t.comment(`random: ${JSON.stringify(c)}`)
  for (const u of ups) t.ok((c[u.id] ?? 0) > 45, `${u.id} gets > 15 % of 300 (got ${c[u.id] ?? 0})`)
})
