// The shared rate-limit cases against both implementations: in-memory twins (injected clock) and Lua in a real Redis.
import t from 'tap'
import { Redis } from 'ioredis'
import { CASES, type Harness } from '../helpers/ratelimit-cases.js'
import { startRedis } from '../helpers/redis.js'
import { MemoryStore } from '../../lib/ratelimit/memory-store.js'
import { RedisStore } from '../../lib/ratelimit/redis-store.js'
import { EPOCH_MS } from '../../lib/ratelimit/grant.js'

let seq = 0

t.test('in-memory twins', async (t) => {
  for (const c of CASES) {
    t.test(c.name, async (t) => {
      let now = EPOCH_MS + 86_400_000 // a day in: every test window starts on a whole ms
      const store = new MemoryStore({ now: () => now })
      t.teardown(() => store.close())
      const h: Harness = {
        label: 'memory',
        store,
        clock: async () => now - EPOCH_MS,
        sleep: async (ms) => { now += ms },
        key: () => `rl:m:{${++seq}}`,
        realTime: false,
      }
      await c.run(t, h)
    })
  }
})

t.test('Lua scripts in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => { client.disconnect() })
  // A generous deadline: these cases check semantics, not latency, on a shared machine
  const store = new RedisStore({ client, timeout: 2000 })
  const h: Harness = {
    label: 'redis',
    store,
    async clock () {
      const [s, us] = await client.time()
      return (Number(s) - EPOCH_MS / 1000) * 1000 + Number(us) / 1000
    },
    sleep: async (ms) => { await new Promise((resolve) => setTimeout(resolve, ms)) },
    key: () => `rl:r:{${++seq}}`,
    realTime: true,
  }
  for (const c of CASES) t.test(c.name, async (t) => { await c.run(t, h) })
})
