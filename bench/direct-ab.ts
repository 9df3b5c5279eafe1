// What @fastify/reply-from's own per-request work costs, inside ONE process (the in-process A/B of
// bench/ratelimit-ab.ts): bare Fastify serves /rf/* through reply.from() and /direct/* through a bare undici
// dispatch() with a handler that gathers the body and sends it as one buffer (bench/lib/setups.ts directAB), on one
// Agent shape and the same upstreams. The load alternates between the two (direct rf, then rf direct); each round's
// CPU µs/request of the process and req/s, median over rounds. It is why the gateway's configured routes send their
// tries straight to undici (lib/proxy/direct.ts) and keep reply.from() for bodies a parser made a value of.
//   node --import tsx bench/direct-ab.ts
// Env: BENCH_DURATION (s, 3), BENCH_ROUNDS (8), BENCH_CONNECTIONS (64), BENCH_WARMUP (s, 3), BENCH_PIN=0.
import os from 'node:os'
import { abRounds } from './lib/ab.js'
import { median } from './lib/report.js'
import { killAll, pin, startChild } from './lib/servers.js'

const env = process.env
const DURATION = Number(env.BENCH_DURATION ?? 3)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 8)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const WARMUP = Number(env.BENCH_WARMUP ?? 3)

async function main (): Promise<void> {
  const upstreams = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const gw = await startChild('server', 'direct-ab', { upstreams: upstreams.map((u) => u.url) })
  const last = os.cpus().length - 1
  for (const pid of [process.pid, ...upstreams.map((u) => u.pid)]) pin(pid, last === 1 ? '0' : `0-${last - 1}`)
  pin(gw.pid, String(last))
  const res = await abRounds(gw, ['direct', 'rf'], { title: 'reply-from vs direct dispatch A/B', rounds: ROUNDS, duration: DURATION, connections: CONNECTIONS, warmup: WARMUP })
  const diff = res.direct.cpu.map((v, i) => v - res.rf.cpu[i])
  const ratio = res.direct.rps.map((v, i) => v / res.rf.rps[i])
  console.log(`\nCPU µs/request: direct ${median(res.direct.cpu).toFixed(1)}, reply-from ${median(res.rf.cpu).toFixed(1)}; ` +
    `direct − reply-from, same round: median ${median(diff).toFixed(2)} µs (rounds: ${diff.map((d) => d.toFixed(1)).join(' ')})`)
  console.log(`req/s direct × reply-from, same round: median ${median(ratio).toFixed(3)} (${ratio.map((x) => x.toFixed(2)).join(' ')})`)
  await gw.stop()
}

try { await main() } catch (err) { console.error(err); process.exitCode = 1 } finally { killAll() }
