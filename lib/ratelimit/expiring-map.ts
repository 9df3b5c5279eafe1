// A Map whose entries die at their own expiresAt, filed in a timer wheel so a sweep touches only the due ones.
//
// Each entry is filed under bucket ceil(expiresAt / tick). When its expiry moves to another bucket the key
// is filed again and the old filing goes stale (checked when its bucket is swept), so a hot key costs one
// array push per bucket change, not per hit. Sweeps run in chunks so a million keys dying in the same
// second never block the event loop for long; reads drop an expired entry on the spot.

export interface Expiring {
  /** Same clock as the `now` given to the map. */
  expiresAt: number
  /** Wheel bookkeeping: the bucket the key is filed under (-1: none yet). */
  bucket: number
}

export class ExpiringMap<V extends Expiring> {
  readonly #entries = new Map<string, V>()
  readonly #wheel = new Map<number, string[]>()
  readonly #tick: number
  readonly #onExpire: ((key: string, value: V) => void) | undefined
  /** Lowest bucket not swept yet. */
  #next: number
  /** Keys of bucket #next already swept in an earlier chunk. */
  #pos = 0

  /** `tick`: bucket width in the map's clock units (ms). `onExpire` sees every entry dropped as expired. */
  constructor (tick: number, now: number, onExpire?: (key: string, value: V) => void) {
    this.#tick = tick
    this.#next = Math.ceil(now / tick)
    this.#onExpire = onExpire
  }

  get size (): number {
    return this.#entries.size
  }

  /** The live entry of `key`, or undefined (an expired one is dropped). */
  get (key: string, now: number): V | undefined {
    const v = this.#entries.get(key)
    if (v === undefined || v.expiresAt > now) return v
    this.#drop(key, v)
    return undefined
  }

  /** Add or replace an entry, filed under its current expiresAt. */
  set (key: string, value: V): void {
    this.#entries.set(key, value)
    value.bucket = -1
    this.schedule(key, value)
  }

  /** Call after changing `value.expiresAt`: files the key again if it moved to another bucket. */
  schedule (key: string, value: V): void {
    const b = Math.max(Math.ceil(value.expiresAt / this.#tick), this.#next)
    if (b !== value.bucket) this.#file(key, value, b)
  }

  #file (key: string, value: V, b: number): void {
    value.bucket = b
    const keys = this.#wheel.get(b)
    if (keys === undefined) this.#wheel.set(b, [key])
    else keys.push(key)
  }

  /** Drop every entry expired by `now`, looking at most at `budget` filings. Returns true when done. */
  sweep (now: number, budget = Infinity): boolean {
    while (this.#next * this.#tick <= now) {
      const keys = this.#wheel.get(this.#next)
      if (keys !== undefined) {
        const end = Math.min(keys.length, this.#pos + budget)
        for (let i = this.#pos; i < end; i++) this.#check(keys[i], now)
        budget -= end - this.#pos
        if (end < keys.length) {
          this.#pos = end
          return false
        }
        this.#wheel.delete(this.#next)
      }
      this.#pos = 0
      this.#next++
    }
    return true
  }

  /** Every live entry (for close()). */
  entries (): IterableIterator<[string, V]> {
    return this.#entries.entries()
  }

  clear (): void {
    this.#entries.clear()
    this.#wheel.clear()
    this.#pos = 0
  }

  #check (key: string, now: number): void {
    const v = this.#entries.get(key)
    // Stale filing: the key was dropped, replaced or filed under a later bucket since
    if (v === undefined || v.bucket !== this.#next) return
    if (v.expiresAt <= now) this.#drop(key, v)
    else this.#file(key, v, Math.max(Math.ceil(v.expiresAt / this.#tick), this.#next + 1)) // expiry raised without schedule()
  }

  #drop (key: string, v: V): void {
    this.#entries.delete(key)
    this.#onExpire?.(key, v)
  }
}
