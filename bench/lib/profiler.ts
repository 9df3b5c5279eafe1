// In-process CPU profile + allocation sampling over the inspector, started and stopped on
// request, so a profile covers one measured run and none of the start-up.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { PerformanceObserver, constants } from 'node:perf_hooks'

/** Counts garbage collections and their pause time in this process. */
export class GcMeter {
  count = 0
  ms = 0
  /** Mark-compact (major) collections only. */
  majorCount = 0
  majorMs = 0
  constructor () {
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        this.count++
        this.ms += e.duration
        if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) { this.majorCount++; this.majorMs += e.duration }
      }
    })
    obs.observe({ entryTypes: ['gc'] })
  }
}

export class Profiler {
  private session: Session | undefined

  async start (): Promise<void> {
    const s = new Session()
    s.connect()
    await s.post('Profiler.enable')
    await s.post('Profiler.setSamplingInterval', { interval: 200 }) // µs; V8's default is 1000
    await s.post('HeapProfiler.enable')
    // Keep samples of objects already collected: we want the allocation rate, not what stays live.
    await s.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
    await s.post('Profiler.start')
    this.session = s
  }

  /** Writes `<prefix>.cpuprofile` and `<prefix>.heapprofile`; returns their paths. */
  async stop (prefix: string): Promise<string[]> {
    const s = this.session
    if (s === undefined) throw new Error('profiler not started')
    this.session = undefined
    const { profile } = await s.post('Profiler.stop')
    const { profile: heap } = await s.post('HeapProfiler.stopSampling')
    s.disconnect()
    const files = [`${prefix}.cpuprofile`, `${prefix}.heapprofile`]
    writeFileSync(files[0], JSON.stringify(profile))
    writeFileSync(files[1], JSON.stringify(heap))
    return files
  }
}
