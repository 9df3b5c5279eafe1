// Which Redis client a component runs on: one rule for the rate limiter and the cluster plugin.
//
// The first ioredis client among `existing` (an app's client, the cluster's `gatewayRedis`,
// @fastify/redis's `redis`, in the caller's order of preference) is used and never closed by us;
// else `config` (a client: the same; a `cluster.redis` config: a connection of our own, closed by
// close()); else none (single node, in memory).
import { Cluster } from 'ioredis'
import {
  closeRedisConnection, createRedisConnection, failFastOptions, isRedisClient,
  type RedisClient, type RedisConnectionConfig, type RedisConnectionOptions,
} from './redis-connection.js'

export interface ResolveRedisClientOptions {
  /** Clients that may exist already, in order of preference; anything that is not an ioredis client is skipped. */
  existing?: readonly unknown[]
  /** Else this: a client (used as is), or a connection config (connected with `connection`'s options). */
  config?: RedisClient | RedisConnectionConfig
  /** Options of a connection of our own. */
  connection?: RedisConnectionOptions
}

export interface ResolvedRedisClient {
  /** undefined: no Redis (single node, in memory). */
  readonly client: RedisClient | undefined
  /** Whether we made it (close() closes it) or it belongs to someone else. */
  readonly owned: boolean
  /** Closes the client if it is ours; a no-op otherwise. */
  close (): Promise<void>
}

export function resolveRedisClient (o: ResolveRedisClientOptions): ResolvedRedisClient {
  for (const c of o.existing ?? []) if (isRedisClient(c)) return notOurs(c)
  if (o.config === undefined) return notOurs(undefined)
  if (isRedisClient(o.config)) return notOurs(o.config)
  const client = createRedisConnection(o.config, o.connection)
  return { client, owned: true, async close () { await closeRedisConnection(client) } }
}

function notOurs (client: RedisClient | undefined): ResolvedRedisClient {
  return { client, owned: false, async close () {} }
}

/**
 * A connection of our own to `base`'s server with other deadlines (`commandTimeout`), fail-fast whatever
 * the base's options: the cluster components run on it, so a slow call of theirs never waits on the
 * rate limiter's batched client nor delays it.
 */
export function duplicateFailFast (base: RedisClient, commandTimeout: number): RedisClient {
  let dup: RedisClient
  if (base instanceof Cluster) {
    dup = base.duplicate(undefined, {
      enableOfflineQueue: false,
      lazyConnect: true,
      enableAutoPipelining: false,
      redisOptions: { ...base.options.redisOptions, commandTimeout, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false },
    })
  } else {
    dup = base.duplicate({ ...failFastOptions({ commandTimeout }), lazyConnect: true })
  }
  dup.on('error', noop) // the link reports outages once; ioredis repeats errors on every reconnect
  if (dup.status === 'wait') dup.connect().catch(noop)
  return dup
}

function noop (): void {}
