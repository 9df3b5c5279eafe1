// MemoryStore memory stays bounded: 1M distinct client keys, then the same after their windows pass.
// Real clock and the store's own sweep timer (no manual sweep): entries, heap and RSS at each stage,
// and the longest event-loop stall while the sweep drops a million keys in chunks.
// Usage: node --expose-gc --import tsx bench/ratelimit-memory.ts [--keys 1000000] [--algorithm sliding_window] [--window 1000] [--chunk 5000]
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { MemoryStore } from '../lib/ratelimit/memory-store.js'
import { keyBuilder } from '../lib/ratelimit/key.js'
import { ALGORITHMS, type Algorithm, type LimitRule } from '../lib/ratelimit/types.js'

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    algorithm: { type: 'string', default: 'sliding_window' },
    window: { type: 'string', default: '1000' },
    chunk: { type: 'string', default: '5000' },
  },
})
const KEYS = Number(args.keys)
const algorithm = args.algorithm as Algorithm
if (!ALGORITHMS.includes(algorithm)) throw new Error(`--algorithm: one of ${ALGORITHMS.join(', ')}`)
const rule: LimitRule = { algorithm, limit: 100, window: Number(args.window) }
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) console.warn('run with --expose-gc for settled heap figures')

const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`
function sample (stage: string, store: MemoryStore): void {
  gc?.()
  const m = process.memoryUsage()
  console.log(`${stage.padEnd(34)} entries ${String(store.size).padStart(8)}  heapUsed ${mb(m.heapUsed).padStart(9)}  rss ${mb(m.rss).padStart(9)}`)
}

// Baseline: this machine's own event-loop noise over 2 s of idling (shared, loaded machines stall too)
const idle = monitorEventLoopDelay({ resolution: 5 })
idle.enable()
await new Promise((resolve) => setTimeout(resolve, 2000))
idle.disable()
console.log(`baseline event-loop delay while idle: max ${(idle.max / 1e6).toFixed(1)} ms, p99 ${(idle.percentile(99) / 1e6).toFixed(1)} ms`)

const store = new MemoryStore({ sweepChunk: Number(args.chunk) })
sample('start', store)
const key = keyBuilder('api-gateway-cluster:rl:', '/users', 0) // real key names: prefix, route, rule, {sha1/96 of the IP}
const started = performance.now()
for (let i = 0; i < KEYS; i++) store.consumeSync(key(`10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`), rule, 1)
const took = performance.now() - started
console.log(`${KEYS} consumes of distinct keys in ${took.toFixed(0)} ms (${(KEYS / took * 1000 / 1e6).toFixed(2)} M/s, key hashing included)`)
sample(`after ${KEYS} keys`, store)

// Keys die after their TTL (sliding_window: up to 2 windows); the timer sweeps every second in chunks
const lag = monitorEventLoopDelay({ resolution: 5 })
lag.enable()
const until = performance.now() + 2 * rule.window + 3000
while (store.size > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 100))
lag.disable()
console.log(`swept by the timer ${(performance.now() - started - took).toFixed(0)} ms after the last insert; event-loop delay while sweeping: max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`)
sample('after the windows passed', store)
await new Promise((resolve) => setTimeout(resolve, 5000))
sample('5 s later (V8 returns pages lazily)', store)
await store.close()
sample('after close()', store)
