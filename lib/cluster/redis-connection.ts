// The gateway's own Redis client from `cluster.redis`: fail fast, never hold a request, never hold boot.
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis'

export interface HostPort { host: string, port: number }
/** `cluster.redis` as the config gives it: a URL, Sentinel or Cluster. */
export type RedisConnectionConfig =
  | string
  | { sentinels: HostPort[], name: string, password?: string, sentinelPassword?: string }
  | { nodes: HostPort[], password?: string }

export type RedisClient = Redis | Cluster

export interface RedisConnectionOptions {
  /** ms; ioredis rejects a command that got no answer by then (REDIS.md: the only guard against a hung Redis). */
  commandTimeout?: number
  /** ms to open a TCP connection. */
  connectTimeout?: number
  /** ms; the reconnect backoff never waits longer, so the client is back within this of Redis returning. */
  maxReconnectDelay?: number
  /** Batch commands issued in one tick into one write (ioredis enableAutoPipelining). */
  autoPipelining?: boolean
  /**
   * Standalone and Sentinel: hold the socket's writes until the end of the event-loop turn, so commands sent by
   * the requests of one turn leave in one writev (see coalesceWrites). Default false. For clients that send one
   * command per request; the rate limiter batches its decisions per turn itself and runs without it (BENCHMARKS.md).
   */
  coalesceWrites?: boolean
  /** Called on every client error (connection refused, reset...); the client always has a listener. */
  onError?: (err: Error) => void
  /** Extra ioredis options, applied last. */
  redisOptions?: RedisOptions
}

/** REDIS.md "A client that never hangs a request", with the caller's deadlines. */
export function failFastOptions (o: RedisConnectionOptions = {}): RedisOptions {
  const cap = o.maxReconnectDelay ?? 500
  return {
    enableOfflineQueue: false,
    commandTimeout: o.commandTimeout ?? 200,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: o.connectTimeout ?? 500,
    retryStrategy: (times: number) => Math.min(times * 50, cap),
    lazyConnect: true,
    enableAutoPipelining: o.autoPipelining ?? false,
  }
}

/**
 * Create the client and start connecting in the background: the promise of `connect()`
 * is never awaited, so boot goes on while Redis is down; commands fail fast until it is up.
 */
export function createRedisConnection (config: RedisConnectionConfig, o: RedisConnectionOptions = {}): RedisClient {
  const base = { ...failFastOptions(o), ...o.redisOptions }
  const cap = o.maxReconnectDelay ?? 500
  let client: RedisClient
  if (typeof config === 'string') {
    client = new Redis(config, base)
  } else if ('sentinels' in config) {
    client = new Redis({
      ...base,
      sentinels: config.sentinels,
      name: config.name,
      password: config.password,
      sentinelPassword: config.sentinelPassword,
      sentinelRetryStrategy: (times: number) => Math.min(times * 50, cap),
    })
  } else {
    const { retryStrategy: _r, enableOfflineQueue: _e, lazyConnect: _l, enableAutoPipelining: auto, ...redisOptions } = base
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: false,
      lazyConnect: true,
      enableAutoPipelining: auto,
      clusterRetryStrategy: (times: number) => Math.min(times * 50, cap),
      // a command to a dead master fails now instead of waiting out failover retries
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 0,
      maxRedirections: 4,
      // a dead master never answers MOVED: without a periodic refresh the client keeps its slots until some other
      // error refreshes them, and their keys stay on the outage policy long after the replica's promotion
      slotsRefreshInterval: 1000,
      redisOptions: { ...redisOptions, password: config.password },
    }
    client = new Cluster(config.nodes, clusterOptions)
  }
  if (o.coalesceWrites === true && client instanceof Redis) coalesceWrites(client)
  const onError = o.onError ?? noop
  // ioredis prints "Unhandled error event" on every reconnect without a listener
  client.on('error', onError)
  client.connect().catch(noop)
  return client
}

/**
 * Cork the client's socket at its first write of an event-loop turn and uncork it in setImmediate: the commands
 * of every request handled in that turn go out in one writev instead of one write(2) each, and Redis reads them
 * in one read. Unlike ioredis auto-pipelining there is no Pipeline object per batch and no wait for the previous
 * batch's replies; a command waits at most until the end of the turn. Re-applied on every reconnect (new socket).
 */
export function coalesceWrites (client: Redis): void {
  const patch = (): void => {
    const stream = (client as unknown as { stream?: CorkableStream }).stream
    if (stream === undefined || stream[kCoalesced] === true) return
    stream[kCoalesced] = true
    const write = stream.write
    let corked = false
    const uncork = (): void => { corked = false; stream.uncork() }
    stream.write = function (this: CorkableStream, ...args: unknown[]): boolean {
      if (!corked) {
        corked = true
        stream.cork()
        setImmediate(uncork)
      }
      return write.apply(this, args)
    }
  }
  client.on('connect', patch)
}

const kCoalesced = Symbol('fhg.coalesced')
interface CorkableStream {
  write: (...args: unknown[]) => boolean
  cork: () => void
  uncork: () => void
  [kCoalesced]?: boolean
}

/** Sentinel connections refuse QUIT (REDIS.md): disconnect them; others QUIT, bounded by `timeoutMs`. */
export async function closeRedisConnection (client: RedisClient, timeoutMs = 500): Promise<void> {
  const sentinel = !(client instanceof Cluster) && client.options.sentinels !== undefined && client.options.sentinels !== null &&
    client.options.sentinels.length > 0
  if (sentinel || client.status !== 'ready') {
    client.disconnect()
    return
  }
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); timer.unref() })
  try {
    await Promise.race([client.quit().then(noop, noop), late])
  } finally {
    clearTimeout(timer)
    client.disconnect()
  }
}

/** A live ioredis client (Redis or Cluster) rather than a config object. */
export function isRedisClient (x: unknown): x is RedisClient {
  return x instanceof Redis || x instanceof Cluster ||
    (typeof x === 'object' && x !== null && typeof (x as { defineCommand?: unknown }).defineCommand === 'function')
}

function noop (): void {}
