// An LRU bounded by entry count and by total size (a caller-given size per entry, e.g. bytes).

export class SizedLru<V> {
  private readonly map = new Map<string, { value: V, size: number }>()
  private _size = 0

  constructor (readonly maxEntries: number, readonly maxSize = Infinity) {
    if (!(Number.isInteger(maxEntries) && maxEntries > 0)) throw new TypeError('maxEntries must be a positive integer')
    if (!(maxSize > 0)) throw new TypeError('maxSize must be a positive number')
  }

  get count (): number { return this.map.size }
  /** The sum of the sizes of the entries held. */
  get size (): number { return this._size }

  /** The value, marked as most recently used. */
  get (key: string): V | undefined {
    const e = this.map.get(key)
    if (e === undefined) return undefined
    // a Map keeps insertion order: re-inserting marks the key as used
    this.map.delete(key)
    this.map.set(key, e)
    return e.value
  }

  /** The value, without touching its recency. */
  peek (key: string): V | undefined { return this.map.get(key)?.value }

  /** Insert or replace (as most recently used), then evict the least recently used entries past either bound. */
  set (key: string, value: V, size = 0): void {
    const old = this.map.get(key)
    if (old !== undefined) {
      this._size -= old.size
      this.map.delete(key)
    }
    this.map.set(key, { value, size })
    this._size += size
    this.evict()
  }

  /** Change the recorded size of `key` (its value shrank or grew in place). */
  resize (key: string, size: number): void {
    const e = this.map.get(key)
    if (e === undefined) return
    this._size += size - e.size
    e.size = size
    if (size > 0) this.evict()
  }

  delete (key: string): boolean {
    const e = this.map.get(key)
    if (e === undefined) return false
    this._size -= e.size
    return this.map.delete(key)
  }

  clear (): void {
    this.map.clear()
    this._size = 0
  }

  * entries (): IterableIterator<[string, V]> {
    for (const [k, e] of this.map) yield [k, e.value]
  }

  private evict (): void {
    // the first key of the Map is the least recently used; the newest entry always stays
    while ((this.map.size > this.maxEntries || this._size > this.maxSize) && this.map.size > 1) {
      const k = this.map.keys().next().value as string
      this._size -= this.map.get(k)!.size
      this.map.delete(k)
    }
  }
}
