/**
 * Rolling counts of successes and failures over `windowMs`, in `buckets` fixed slots
 * (Hystrix's rolling window). Recording is O(1) and allocation free; reading sums the
 * slots (O(buckets)). A slot is reused once its time has slid out of the window.
 */
export class RollingWindow {
  readonly windowMs: number
  readonly bucketMs: number
  private readonly stamps: Float64Array
  private readonly totals: Uint32Array
  private readonly failures: Uint32Array

  constructor (windowMs: number, buckets = 10) {
    if (!(windowMs > 0)) throw new RangeError('window must be > 0 ms')
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError('buckets must be an integer >= 1')
    this.windowMs = windowMs
    this.bucketMs = windowMs / buckets
    this.stamps = new Float64Array(buckets).fill(-1)
    this.totals = new Uint32Array(buckets)
    this.failures = new Uint32Array(buckets)
  }

  record (failed: boolean, now: number): void {
    const tick = Math.floor(now / this.bucketMs)
    const slot = tick % this.stamps.length
    if (this.stamps[slot] !== tick) {
      this.stamps[slot] = tick
      this.totals[slot] = 0
      this.failures[slot] = 0
    }
    this.totals[slot]++
    if (failed) this.failures[slot]++
  }

  /** Requests recorded in the window ending at `now`. */
  total (now: number): number { return this.sum(this.totals, now) }

  /** Failures recorded in the window ending at `now`. */
  failed (now: number): number { return this.sum(this.failures, now) }

  reset (): void {
    this.stamps.fill(-1)
    this.totals.fill(0)
    this.failures.fill(0)
  }

  private sum (counts: Uint32Array, now: number): number {
    const tick = Math.floor(now / this.bucketMs)
    const oldest = tick - this.stamps.length
    let n = 0
    for (let i = 0; i < counts.length; i++) {
      const s = this.stamps[i]
      if (s > oldest && s <= tick) n += counts[i]
    }
    return n
  }
}
