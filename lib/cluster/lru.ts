// A bounded map in least-recently-used order (a Map keeps insertion order: re-inserting marks a key as used).

export class LruMap<V> {
  private readonly map = new Map<string, V>()

  constructor (readonly maxEntries: number) {
    if (!(Number.isInteger(maxEntries) && maxEntries > 0)) throw new TypeError('maxEntries must be a positive integer')
  }

  get size (): number { return this.map.size }

  /** The value, marked as most recently used. */
  get (key: string): V | undefined {
    const v = this.map.get(key)
    if (v === undefined) return undefined
    this.map.delete(key)
    this.map.set(key, v)
    return v
  }

  /** The value, without touching its recency. */
  peek (key: string): V | undefined { return this.map.get(key) }

  set (key: string, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    // the first key of the Map is the least recently used
    if (this.map.size > this.maxEntries) this.map.delete(this.map.keys().next().value as string)
  }

  delete (key: string): boolean { return this.map.delete(key) }
  clear (): void { this.map.clear() }
  values (): IterableIterator<V> { return this.map.values() }
}
