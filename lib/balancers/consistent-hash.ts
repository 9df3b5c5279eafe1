import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'
import { RoundRobinBalancer } from './round-robin.js'
import { WeightTableBalancer } from './weight-table.js'

/** Virtual nodes per target of average weight (Ketama uses 160). */
export const VNODES = 160
/** A lookup first narrows the ring to the bucket of its hash's top INDEX_BITS bits, then binary-searches it. */
const INDEX_BITS = 12
const INDEX_SHIFT = 32 - INDEX_BITS
const INDEX_SIZE = 1 << INDEX_BITS
/** Ring steps a lookup walks past unusable owners before it scans the pool instead. */
const MAX_WALK = 256

/**
 * `consistent_hash`: a hash ring (Karger et al. 1997, Ketama layout) of VNODES
 * virtual nodes per target scaled by weight, built only when the set of (target, weight)
 * changes: a status-only version bump (pool.touch) keeps the ring.
 * Lookup: FNV-1a + murmur3 fmix32 of ctx.hashKey, binary search, O(log n).
 * An unusable owner hands the key to the next distinct usable target on the ring, so only
 * its keys move; removing one of n targets remaps about 1/n of keys.
 * Without a hashKey it falls back to round robin.
 */
export class ConsistentHashBalancer extends WeightTableBalancer implements Balancer {
  readonly strategy = 'consistent_hash' as const
  /** Ring positions, ascending, and the snap index owning each. */
  private hashes = new Uint32Array(0)
  private owners = new Int32Array(0)
  /** index[b]: first ring position whose hash has top INDEX_BITS bits >= b (a lookup searches one bucket). */
  private index = new Int32Array(INDEX_SIZE + 1)
  private members = 0
  /** Walk bookkeeping: seen[i] === gen when target i was already tried in this walk. */
  private seen = new Uint32Array(0)
  private gen = 0
  private readonly fallback = new RoundRobinBalancer()

  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined {
    const key = ctx.hashKey
    if (key === undefined) return this.fallback.pick(pool, ctx)
    this.sync(pool)
    const hashes = this.hashes
    const len = hashes.length
    if (len === 0) return undefined
    const h = hash32(key)
    const b = h >>> INDEX_SHIFT
    let i = lowerBound(hashes, h, this.index[b], this.index[b + 1])
    if (i === len) i = 0
    const snap = this.snap
    const owners = this.owners
    const owner = snap[owners[i]]
    if (usable(owner, ctx)) return owner

    let gen = ++this.gen
    if (gen === 0xffffffff) {
      this.seen.fill(0)
      gen = this.gen = 1
    }
    const seen = this.seen
    seen[owners[i]] = gen
    let distinct = 1
    const limit = len < MAX_WALK ? len : MAX_WALK
    for (let k = 1; k < limit && distinct < this.members; k++) {
      i = i + 1 === len ? 0 : i + 1
      const o = owners[i]
      if (seen[o] === gen) continue
      seen[o] = gen
      distinct++
      const t = snap[o]
      if (usable(t, ctx)) return t
    }
    if (distinct >= this.members) return undefined
    // Most of the ring is out: O(n) scan from a key-derived start, still deterministic per key.
    const n = snap.length
    for (let k = 0, j = h % n; k < n; k++, j = j + 1 === n ? 0 : j + 1) {
      const t = snap[j]
      if (seen[j] !== gen && usable(t, ctx)) return t
    }
    return undefined
  }

  protected build (targets: readonly Target[], weights: Float64Array): void {
    const n = targets.length
    let total = 0
    let members = 0
    for (let i = 0; i < n; i++) {
      const w = weights[i]
      if (w > 0) { total += w; members++ }
    }
    const counts = new Int32Array(n)
    let size = 0
    for (let i = 0; i < n; i++) {
      if (weights[i] === 0) continue
      counts[i] = Math.max(1, Math.round(VNODES * weights[i] * members / total))
      size += counts[i]
    }
    const hashes = new Uint32Array(size)
    const owners = new Int32Array(size)
    let p = 0
    for (let i = 0; i < n; i++) {
      const base = fnv1a(targets[i].id, FNV_OFFSET)
      for (let r = 0; r < counts[i]; r++) {
        hashes[p] = vnodeHash(base, r)
        owners[p++] = i
      }
    }
    const [sortedHashes, sortedOwners] = radixSort(hashes, owners)
    this.hashes = sortedHashes
    this.index = bucketIndex(sortedHashes)
    this.owners = sortedOwners
    this.members = members
    this.seen = new Uint32Array(n)
    this.gen = 0
  }
}

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/** FNV-1a 32 over UTF-16 code units. */
function fnv1a (s: string, h: number): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME)
  return h
}

/** murmur3 fmix32: FNV alone clusters keys that differ in their last characters. */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** 32-bit hash of a request key: FNV-1a then fmix32. */
export function hash32 (key: string): number {
  return fmix32(fnv1a(key, FNV_OFFSET))
}

/** Position of virtual node r of a target: FNV-1a continued over r's 4 bytes, then fmix32. */
function vnodeHash (base: number, r: number): number {
  let h = base
  h = Math.imul(h ^ (r & 0xff), FNV_PRIME)
  h = Math.imul(h ^ ((r >>> 8) & 0xff), FNV_PRIME)
  h = Math.imul(h ^ ((r >>> 16) & 0xff), FNV_PRIME)
  h = Math.imul(h ^ (r >>> 24), FNV_PRIME)
  return fmix32(h)
}

/** First index in [lo, hi) whose hash is >= h (hi when none). */
function lowerBound (hashes: Uint32Array, h: number, lo: number, hi: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (hashes[mid] < h) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** For each bucket of the top INDEX_BITS bits, where it starts on the sorted ring (16 KB: stays in cache). */
function bucketIndex (hashes: Uint32Array): Int32Array<ArrayBuffer> {
  const index = new Int32Array(INDEX_SIZE + 1)
  let p = 0
  for (let b = 0; b <= INDEX_SIZE; b++) {
    // first position whose top bits are >= b
    while (p < hashes.length && (hashes[p] >>> INDEX_SHIFT) < b) p++
    index[b] = p
  }
  return index
}

/**
 * Stable LSD radix sort of ring positions (3 passes of 11 bits), carrying owners along:
 * ~10x faster than TypedArray#sort at 160k entries, and equal positions stay in target order.
 */
function radixSort (keys: Uint32Array<ArrayBuffer>, vals: Int32Array<ArrayBuffer>): [Uint32Array<ArrayBuffer>, Int32Array<ArrayBuffer>] {
  const len = keys.length
  let k2 = new Uint32Array(len)
  let v2 = new Int32Array(len)
  const count = new Int32Array(2048)
  for (let shift = 0; shift < 32; shift += 11) {
    count.fill(0)
    for (let i = 0; i < len; i++) count[(keys[i] >>> shift) & 2047]++
    let sum = 0
    for (let d = 0; d < 2048; d++) {
      const c = count[d]
      count[d] = sum
      sum += c
    }
    for (let i = 0; i < len; i++) {
      const at = count[(keys[i] >>> shift) & 2047]++
      k2[at] = keys[i]
      v2[at] = vals[i]
    }
    const tk = keys; keys = k2; k2 = tk
    const tv = vals; vals = v2; v2 = tv
  }
  return [keys, vals]
}
