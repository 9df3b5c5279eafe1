// The store contract over Redis: one Lua script call per decision, under a hard deadline.
import type { Cluster, Redis } from 'ioredis'
import { ALGORITHMS, type Algorithm, type Decision, type LimitRule, type RateLimitStore } from './types.js'
import { ALGORITHM_SUFFIX, toDecision, type Grant, type GrantSource } from './grant.js'
import { SCRIPTS } from './scripts/index.js'
import { withDeadline } from './deadline.js'

export interface RedisStoreOptions {
  /** An ioredis client (standalone, Sentinel or Cluster) owned by the caller: the store never connects or quits it. */
  client: Redis | Cluster
  /** Hard deadline of each call, ms (default 50): a late answer rejects with a RateLimitStoreError of kind `timeout`. */
  timeout?: number
}

type Reply = [allowed: number, remaining: number, resetMs: number, retryAfterMs: number, granted: number, epoch: number]
type ScriptCall = (key: string, limit: number, window: number, want: number, min: number, epoch: number) => Promise<Reply>

export class RedisStore implements RateLimitStore, GrantSource {
  readonly timeout: number
  readonly #calls: Record<Algorithm, ScriptCall>
  #count = 0

  constructor (opts: RedisStoreOptions) {
    this.timeout = opts.timeout ?? 50
    const client = opts.client
    const calls: Partial<Record<Algorithm, ScriptCall>> = {}
    for (const algorithm of ALGORITHMS) {
      const { command, lua } = SCRIPTS[algorithm]
      // EVALSHA, falling back to EVAL on NOSCRIPT: heals a script cache lost to a restart or failover
      client.defineCommand(command, { numberOfKeys: 1, lua })
      const fn = (client as unknown as Record<string, ScriptCall>)[command]
      calls[algorithm] = fn.bind(client)
    }
    this.#calls = calls as Record<Algorithm, ScriptCall>
  }

  /** Script calls sent so far (for Redis-calls-per-request figures). */
  get calls (): number {
    return this.#count
  }

  consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    return this.#run(key, rule, cost, cost, 0).then((g) => toDecision(g, rule.limit))
  }

  take (key: string, rule: LimitRule, want: number, min: number): Promise<Grant> {
    return this.#run(key, rule, want, min, 0)
  }

  async refund (key: string, rule: LimitRule, units: number, epoch: number): Promise<void> {
    if (units > 0) await this.#run(key, rule, -units, 0, epoch)
  }

  /** Nothing to release: the connection belongs to the caller. */
  async close (): Promise<void> {}

  #run (key: string, rule: LimitRule, want: number, min: number, epoch: number): Promise<Grant> {
    this.#count++
    let reply: Promise<Reply>
    try {
      reply = this.#calls[rule.algorithm](key + ALGORITHM_SUFFIX[rule.algorithm], rule.limit, rule.window, want, min, epoch)
    } catch (err) {
      reply = Promise.reject(err)
    }
    return withDeadline(reply, this.timeout).then(toGrant)
  }
}

function toGrant (r: Reply): Grant {
  return { allowed: r[0] === 1, remaining: r[1], resetMs: r[2], retryAfterMs: r[3], granted: r[4], epoch: r[5] }
}
