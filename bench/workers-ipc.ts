// node.workers: what an exact rate-limit decision costs over IPC (lib/workers/ipc-store.ts -> limit-host.ts).
// A real node:cluster primary holds the counters; one worker asks. Reports the round trip of one decision
// alone (p50, p99) and the CPU per decision (worker + primary, process.cpuUsage) when a turn's decisions go
// as one batch.
//   node --import tsx bench/workers-ipc.ts   Env: BENCH_SINGLE (5000 round trips), BENCH_BATCH (64 decisions
//   per turn), BENCH_BATCHES (2000)
import cluster from 'node:cluster'
import { LimitHost } from '../lib/workers/limit-host.js'
import { IpcStore } from '../lib/workers/ipc-store.js'
import { isWorkerMessage, processChannel } from '../lib/workers/protocol.js'
import type { LimitRule } from '../lib/ratelimit/types.js'

const SINGLE = Number(process.env.BENCH_SINGLE ?? 5000)
const BATCH = Number(process.env.BENCH_BATCH ?? 64)
const BATCHES = Number(process.env.BENCH_BATCHES ?? 2000)
const rule: LimitRule = { algorithm: 'sliding_window', limit: 1e9, window: 60_000 }
const cpuMicros = (u: NodeJS.CpuUsage): number => u.user + u.system

if (cluster.isPrimary) {
  const host = new LimitHost()
  const worker = cluster.fork()
  let cpuAt: NodeJS.CpuUsage | undefined
  worker.on('message', (m: unknown) => {
    if (isWorkerMessage(m) && m.t === 'rl') {
      worker.send({ fhg: 1, t: 'rl', id: m.id, grants: host.handle(m.calls) })
      return
    }
    const c = m as { cpu?: 'start' | 'stop', result?: string }
    if (c.cpu === 'start') { cpuAt = process.cpuUsage(); worker.send({ cpuStarted: true }) }
    if (c.cpu === 'stop') worker.send({ primaryCpu: cpuMicros(process.cpuUsage(cpuAt)) })
    if (c.result !== undefined) {
      console.log(c.result)
      worker.kill()
      void host.close()
    }
  })
} else {
  const store = new IpcStore(processChannel())
  const ask = async <T>(msg: object, key: string): Promise<T> => await new Promise((resolve) => {
    const on = (m: Record<string, unknown>): void => { if (key in m) { process.off('message', on); resolve(m[key] as T) } }
    process.on('message', on)
    process.send!(msg)
  })
  // warm-up
  for (let i = 0; i < 500; i++) await store.consume(`w${i % 10}`, rule, 1)
  const rtt: number[] = []
  for (let i = 0; i < SINGLE; i++) {
    const t0 = process.hrtime.bigint()
    await store.consume(`k${i % 100}`, rule, 1)
    rtt.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  rtt.sort((a, b) => a - b)
  await ask({ cpu: 'start' }, 'cpuStarted')
  const w0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  for (let b = 0; b < BATCHES; b++) {
    await Promise.all(Array.from({ length: BATCH }, async (_, i) => await store.consume(`k${(b * BATCH + i) % 1000}`, rule, 1)))
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const workerCpu = cpuMicros(process.cpuUsage(w0))
  const primaryCpu = await ask<number>({ cpu: 'stop' }, 'primaryCpu')
  const n = BATCH * BATCHES
  const q = (p: number): string => rtt[Math.min(rtt.length - 1, Math.floor(p * rtt.length))].toFixed(1)
  const result = [
    `node ${process.version}; one worker, one primary (node:cluster IPC)`,
    `one decision alone: round trip p50 ${q(0.5)} µs, p99 ${q(0.99)} µs (${SINGLE} sequential)`,
    `batched, ${BATCH} decisions per turn: ${(n / wall / 1000).toFixed(0)}k decisions/s; CPU per decision ${(workerCpu / n).toFixed(2)} µs in the worker + ${(primaryCpu / n).toFixed(2)} µs in the primary = ${((workerCpu + primaryCpu) / n).toFixed(2)} µs (${store.batches} IPC messages for ${store.calls} calls)`,
  ].join('\n')
  process.send!({ result })
}
