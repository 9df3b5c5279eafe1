// Latency at a fixed offered rate, to the microsecond (autocannon's histogram counts whole milliseconds).
// Open loop: requests are due on a fixed schedule and each latency is measured from its due time, so a
// stall of the server shows in the tail instead of slowing the generator (no coordinated omission).
import { Pool } from 'undici'

export interface RateResult {
  /** Offered and completed rate (req/s). */
  rate: number
  completed: number
  errors: number
  /** ms, from the due time to the end of the body. */
  p50: number
  p99: number
}

const pct = (sorted: Float64Array, p: number): number => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)]

/** `rate` GETs per second to `url` over at most `connections` keep-alive connections for `seconds`. */
export async function fixedRate (url: string, rate: number, seconds: number, connections = 64): Promise<RateResult> {
  const u = new URL(url)
  const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 10_000 })
  const path = (u.pathname === '/' ? '' : u.pathname) + '/bench?x=1'
  const total = Math.max(1, Math.round(rate * seconds))
  const lat = new Float64Array(total)
  let done = 0
  let errors = 0
  let issued = 0
  const t0 = performance.now()
  const interval = 1000 / rate
  await new Promise<void>((resolve) => {
    const one = (due: number): void => {
      pool.request({ path, method: 'GET' }).then(async (res) => {
        await res.body.dump()
        if (res.statusCode !== 200) errors++
        lat[done++] = performance.now() - due
      }, () => { errors++; lat[done++] = performance.now() - due }).finally(() => {
        if (done === total) resolve()
      })
    }
    // every ms, issue what is due by now (timers are not precise enough to issue one at a time)
    const tick = (): void => {
      const now = performance.now()
      while (issued < total && t0 + issued * interval <= now) one(t0 + interval * issued++)
      if (issued < total) setTimeout(tick, 1)
    }
    tick()
  })
  await pool.close()
  const sorted = lat.slice(0, done).sort()
  return { rate, completed: done - errors, errors, p50: pct(sorted, 0.5), p99: pct(sorted, 0.99) }
}
