// The in-process A/B of two paths of one server (bench/access-log-ab.ts, bench/direct-ab.ts): a warm-up per path,
// then rounds that alternate the order (A B, then B A); per round and path, the server's CPU µs/request (its own
// process.cpuUsage over the requests served) and req/s.
import os from 'node:os'
import { cpuMicros, load } from './load.js'
import { fmt } from './report.js'
import type { BenchChild } from './servers.js'

export interface AbOptions { title: string, rounds: number, duration: number, connections: number, warmup: number }
export interface AbSeries { cpu: number[], rps: number[] }

export async function abRounds<P extends string> (server: BenchChild, paths: readonly [P, P], o: AbOptions): Promise<Record<P, AbSeries>> {
  const res = { [paths[0]]: { cpu: [], rps: [] }, [paths[1]]: { cpu: [], rps: [] } } as unknown as Record<P, AbSeries>
  for (const p of paths) {
    const r = await fetch(`${server.url}/${p}/x`)
    if (r.status !== 200) throw new Error(`/${p}: ${r.status} ${await r.text()}`)
    await load({ url: `${server.url}/${p}/x`, connections: o.connections, duration: o.warmup })
  }
  console.log(`${o.title} ${new Date().toISOString()}: ${server.info}; ${o.rounds} rounds x ${o.duration} s per path, ${o.connections} connections; ` +
    `${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`)
  for (let round = 0; round < o.rounds; round++) {
    const line: string[] = []
    for (const p of round % 2 === 0 ? paths : [...paths].reverse()) {
      const before = cpuMicros(await server.stats())
      const t0 = process.hrtime.bigint()
      const r = await load({ url: `${server.url}/${p}/x`, connections: o.connections, duration: o.duration })
      const s = Number(process.hrtime.bigint() - t0) / 1e9
      const cpu = (cpuMicros(await server.stats()) - before) / r.requests.total
      res[p].cpu.push(cpu)
      res[p].rps.push(r.requests.total / s)
      const bad = r.errors + r.timeouts + r.non2xx
      line.push(`${p} ${fmt(r.requests.total / s)}/s ${cpu.toFixed(1)}µs${bad > 0 ? ` !!${bad} bad` : ''}`)
    }
    console.log(`round ${round + 1}: ${line.join('  ')}  [load ${os.loadavg()[0].toFixed(2)}]`)
  }
  return res
}
