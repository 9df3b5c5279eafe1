// Entry of every benchmark child: node --expose-gc --import tsx bench/lib/child.ts <role> <json args>.
// It reports its own CPU and memory over IPC, so each setup's cost is measured alone.
import type { ChildReply, ChildRequest, ChildStats } from './servers.js'
import { startSetup, type SetupRole } from './setups.js'
import { startUpstream } from './upstream.js'
import { GcMeter, Profiler } from './profiler.js'

const role = process.argv[2] as SetupRole | 'upstream'
const args = JSON.parse(process.argv[3] ?? '{}') as { upstreams?: string[] }

function reply (m: ChildReply): void { process.send?.(m) }

const gcMeter = new GcMeter()
const profiler = new Profiler()
let served = (): number => 0
let sockets = (): number => 0
function stats (): ChildStats {
  const cpu = process.cpuUsage()
  const mem = process.memoryUsage()
  return { cpuUser: cpu.user, cpuSystem: cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, served: served(), sockets: sockets(), gcCount: gcMeter.count, gcMs: gcMeter.ms, gcMajorCount: gcMeter.majorCount, gcMajorMs: gcMeter.majorMs }
}

async function handle (m: ChildRequest): Promise<string[] | undefined> {
  switch (m.op) {
    case 'exit': process.exit(0); break
    case 'gc': (globalThis as { gc?: () => void }).gc?.(); break
    case 'prof-start': await profiler.start(); break
    case 'prof-stop': return await profiler.stop(m.arg ?? `bench-${role}-${process.pid}`)
  }
  return undefined
}

try {
  const started = role === 'upstream'
    ? await startUpstream()
    : await startSetup(role, args.upstreams ?? [])
  const counters = started as { served?: () => number, sockets?: () => number }
  if (counters.served !== undefined) served = counters.served
  if (counters.sockets !== undefined) sockets = counters.sockets
  process.on('message', (m: ChildRequest) => {
    handle(m).then(
      (files) => reply({ id: m.id, stats: stats(), files }),
      (err: Error) => reply({ id: m.id, stats: stats(), error: err.message }),
    )
  })
  reply({ type: 'ready', port: started.port, info: started.info })
} catch (err) {
  reply({ type: 'error', message: (err as Error).stack ?? String(err) })
  process.exitCode = 1
}
// The parent is gone (even if it was SIGKILLed): never outlive it.
process.on('disconnect', () => process.exit(0))
