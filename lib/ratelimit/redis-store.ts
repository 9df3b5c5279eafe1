// The store contract over Redis. The decisions asked for in one event-loop turn leave as one script call per
// algorithm (per hash slot on Redis Cluster), under one hard deadline: Lua runs atomically, so a batch is as
// exact as one call per decision, and the per-command costs (ioredis command, write, timers, Redis's own
// dispatch) are paid once per turn instead of once per request.
import { Cluster, type Redis } from 'ioredis'
import { ALGORITHMS, type Algorithm, type Decision, type LimitRule, type RateLimitStore } from './types.js'
import { ALGORITHM_SUFFIX, type Grant, type GrantSource } from './grant.js'
import { REPLY_WIDTH, SCRIPTS, parsePacked } from './scripts/index.js'
import { Deadline, RateLimitStoreError } from './deadline.js'
import { hashTag, keySlot } from '../cluster/key-slot.js'

export interface RedisStoreOptions {
  /** An ioredis client (standalone, Sentinel or Cluster) owned by the caller: the store never connects or quits it. */
  client: Redis | Cluster
  /**
   * Deadline of each call, ms (default 50), from the moment it is written: a late answer rejects with a RateLimitStoreError
   * of kind `timeout`. Stalls of this process do not count (deadline.ts), up to deadlineCap(timeout) in all.
   */
  timeout?: number
  /** Most decisions in one script call (default 128): bounds how long one call holds Redis (~2-5 µs per decision). */
  maxBatch?: number
  /** Duration of each script call, seconds, failed ones included (the store-duration histogram). */
  onDuration?: (seconds: number) => void
  /**
   * A call that timed out was answered after all: Redis counted its decisions (`allowed` of `total` within
   * the limit), though the caller decided them by its outage policy. Once per late batch.
   */
  onLate?: (allowed: number, total: number) => void
}

/** A batch script with packed arguments: one string of 5 numbers per key in, one string of 6 per key out (scripts/batch.ts). */
type ScriptCall = (numberOfKeys: number, keys: string[], packedArgs: string) => Promise<string>

/** The decisions of one script call; settled once, by the reply or by the deadline. */
class Batch {
  readonly keys: string[] = []
  /** limit, window, want, least, epoch per key, separated by spaces. */
  args = ''
  readonly reply: Promise<number[]>
  resolve!: (r: number[]) => void
  reject!: (err: RateLimitStoreError) => void
  deadline: Deadline | undefined = undefined
  /** The deadline passed before the reply: the reply, if it comes, is reported to onLate. */
  expired = false
  constructor (readonly algorithm: Algorithm, readonly group: string) {
    this.reply = new Promise<number[]>((resolve, reject) => { this.resolve = resolve; this.reject = reject })
  }
}

export class RedisStore implements RateLimitStore, GrantSource {
  readonly timeout: number
  readonly #calls: Record<Algorithm, ScriptCall>
  readonly #maxBatch: number
  readonly #client: Redis | Cluster
  readonly #onDuration: ((seconds: number) => void) | undefined
  readonly #onLate: ((allowed: number, total: number) => void) | undefined
  /** Redis Cluster: keys of different hash tags may live in different slots, so batches are per tag. */
  readonly #cluster: boolean
  /** Batches filling in this turn: by algorithm (standalone, Sentinel) or by algorithm and hash tag (Cluster). */
  readonly #open = new Map<string, Batch>()
  #flushScheduled = false
  #count = 0
  #decisions = 0

  constructor (opts: RedisStoreOptions) {
    this.timeout = opts.timeout ?? 50
    this.#maxBatch = Math.max(1, opts.maxBatch ?? 128)
    this.#onDuration = opts.onDuration
    this.#onLate = opts.onLate
    const client = opts.client
    this.#client = client
    // isCluster: also a Cluster of another copy of ioredis (an app's @fastify/redis)
    this.#cluster = client instanceof Cluster || (client as { isCluster?: boolean }).isCluster === true
    const calls: Partial<Record<Algorithm, ScriptCall>> = {}
    for (const algorithm of ALGORITHMS) {
      const { command, lua } = SCRIPTS[algorithm]
      // EVALSHA, falling back to EVAL on NOSCRIPT: heals a script cache lost to a restart or failover.
      // No numberOfKeys: each call passes its own key count first.
      client.defineCommand(command, { lua })
      const fn = (client as unknown as Record<string, ScriptCall>)[command]
      calls[algorithm] = fn.bind(client)
    }
    this.#calls = calls as Record<Algorithm, ScriptCall>
  }

  /** Script calls sent so far (for Redis-calls-per-request figures). */
  get calls (): number {
    return this.#count
  }

  /** Decisions (consume, take, refund) sent so far, over `calls` script calls. */
  get decisions (): number {
    return this.#decisions
  }

  consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    const limit = rule.limit
    return this.#add(key, rule, cost, cost, 0, (r, o) => ({
      allowed: r[o] === 1, limit, remaining: r[o + 1], resetMs: r[o + 2], retryAfterMs: r[o + 3],
    }))
  }

  take (key: string, rule: LimitRule, want: number, min: number): Promise<Grant> {
    return this.#add(key, rule, want, min, 0, toGrant)
  }

  async refund (key: string, rule: LimitRule, units: number, epoch: number): Promise<void> {
    if (units > 0) await this.#add(key, rule, -units, 0, epoch, toGrant)
  }

  /**
   * Which Redis serves `key`: '' on standalone and Sentinel (one master); on Redis Cluster the master that owns the
   * key's slot now (its host:port, from the client's slot map), so an outage of one master is told apart from the rest.
   */
  shardOf (key: string): string {
    if (!this.#cluster) return ''
    // '' until the client knows the slots (the cluster as a whole is not reachable yet)
    return (this.#client as Cluster).slots?.[keySlot(key)]?.[0] ?? ''
  }

  /** Send what is queued now; nothing else to release (the connection belongs to the caller). */
  async close (): Promise<void> {
    this.#flush()
  }

  /** Queue one decision into this turn's batch of its algorithm (and hash tag on Cluster); `pick` reads its reply. */
  #add<T> (key: string, rule: LimitRule, want: number, min: number, epoch: number, pick: (r: number[], at: number) => T): Promise<T> {
    const algorithm = rule.algorithm
    const group = this.#cluster ? algorithm + hashTag(key) : algorithm
    let batch = this.#open.get(group)
    if (batch === undefined) {
      batch = new Batch(algorithm, group)
      this.#open.set(group, batch)
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        // After this turn's I/O callbacks: every request read in this turn has queued its decision by then
        setImmediate(this.#flushAll)
      }
    }
    const at = batch.keys.length * REPLY_WIDTH
    batch.keys.push(key + ALGORITHM_SUFFIX[algorithm])
    batch.args += `${batch.args === '' ? '' : ' '}${rule.limit} ${rule.window} ${want} ${min} ${epoch}`
    this.#decisions++
    const reply = batch.reply.then((r) => pick(r, at))
    if (batch.keys.length >= this.#maxBatch) this.#send(batch)
    return reply
  }

  readonly #flushAll = (): void => {
    this.#flushScheduled = false
    this.#flush()
  }

  #flush (): void {
    for (const batch of this.#open.values()) this.#send(batch)
  }

  #send (batch: Batch): void {
    this.#open.delete(batch.group)
    this.#count++
    const onDuration = this.#onDuration
    const t0 = onDuration === undefined ? 0 : performance.now()
    let reply: Promise<string>
    try {
      reply = this.#calls[batch.algorithm](batch.keys.length, batch.keys, batch.args)
    } catch (err) {
      reply = Promise.reject(err)
    }
    // from the write, not from the first decision queued: the turn that queued them is our loop's time, not Redis's.
    // One error object for the whole batch: the guard counts one store error per call, not one per decision.
    batch.deadline = new Deadline(this.timeout, (waited) => {
      batch.expired = true
      batch.reject(new RateLimitStoreError('timeout', String(this.timeout), undefined, waited))
    })
    reply.then((packed) => {
      batch.deadline!.cancel()
      onDuration?.((performance.now() - t0) / 1000)
      const r = typeof packed === 'string' ? parsePacked(packed, []) : []
      if (r.length !== batch.keys.length * REPLY_WIDTH) batch.reject(new RateLimitStoreError('failed', 'unexpected script reply'))
      else if (!batch.expired) batch.resolve(r)
      else if (this.#onLate !== undefined) {
        // Redis counted these decisions after all: report how many it let through, so metrics match its view
        let allowed = 0
        for (let o = 0; o < r.length; o += REPLY_WIDTH) if (r[o] === 1) allowed++
        this.#onLate(allowed, batch.keys.length)
      }
    }, (err: unknown) => {
      batch.deadline!.cancel()
      onDuration?.((performance.now() - t0) / 1000)
      batch.reject(new RateLimitStoreError('failed', (err as Error)?.message ?? String(err), err))
    })
  }
}

function toGrant (r: number[], o: number): Grant {
  return { allowed: r[o] === 1, remaining: r[o + 1], resetMs: r[o + 2], retryAfterMs: r[o + 3], granted: r[o + 4], epoch: r[o + 5] }
}
