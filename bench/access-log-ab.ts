// What the access log costs per request, inside ONE gateway process (the in-process A/B of bench/ratelimit-ab.ts):
// the node runs the CLI's log (pino on the buffered destination, written to /dev/null) and serves /on/* and /off/*,
// the same upstream and route shape, only /on/* with the access-log hook. The load alternates between the two
// (on off, then off on); each round's CPU µs/request of the process and req/s, /on against /off of the same
// round, median over rounds. Goal (issue 13): under 5 µs/request.
//   node --import tsx bench/access-log-ab.ts
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
const GOAL_US = 5

async function main (): Promise<void> {
  const upstreams = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const gw = await startChild('gateway', 'access-ab', { upstreams: upstreams.map((u) => u.url) })
  const last = os.cpus().length - 1
  for (const pid of [process.pid, ...upstreams.map((u) => u.pid)]) pin(pid, last === 1 ? '0' : `0-${last - 1}`)
  pin(gw.pid, String(last))
  const res = await abRounds(gw, ['on', 'off'], { title: 'access log A/B', rounds: ROUNDS, duration: DURATION, connections: CONNECTIONS, warmup: WARMUP })
  const diff = res.on.cpu.map((v, i) => v - res.off.cpu[i])
  const ratio = res.on.rps.map((v, i) => v / res.off.rps[i])
  console.log(`\nCPU µs/request: on ${median(res.on.cpu).toFixed(1)}, off ${median(res.off.cpu).toFixed(1)}; ` +
    `on − off, same round: median ${median(diff).toFixed(2)} µs (rounds: ${diff.map((d) => d.toFixed(1)).join(' ')})`)
  console.log(`req/s on × off, same round: median ${median(ratio).toFixed(3)} (${ratio.map((x) => x.toFixed(2)).join(' ')})`)
  const m = median(diff)
  console.log(`CHECK access log < ${GOAL_US} µs/request (median of same-round differences): ${m.toFixed(2)} → ${m < GOAL_US ? 'PASS' : 'FAIL'}`)
  await gw.stop()
}

try { await main() } catch (err) { console.error(err); process.exitCode = 1 } finally { killAll() }
