// What every cluster component of one node shares: the Redis link, the key builder and the subscriber connection.
import { clusterKeys, type ClusterKeys } from './keys.js'
import { PubSub } from './pubsub.js'
import type { RedisClient } from './redis-connection.js'
import { RedisLink } from './redis-link.js'

export interface ClusterContext {
  readonly link: RedisLink
  readonly keys: ClusterKeys
  readonly pubsub: PubSub
  /** Closes the subscriber connection and detaches from the client, which belongs to whoever created it. */
  close (): Promise<void>
}

export interface ClusterContextOptions {
  /** The node's client (see redis-connection.ts); absent: the node runs alone on memory. */
  client?: RedisClient
  /** `cluster.name`: prefix of every key and channel. */
  name: string
  /** ms; deadline of every Redis call (default 500). */
  timeout?: number
  /** Called on Redis going down (once per outage) and on subscriber errors. */
  onError?: (err: Error) => void
}

export function createClusterContext (o: ClusterContextOptions): ClusterContext {
  const link = new RedisLink(o.client, { timeout: o.timeout, onError: o.onError })
  const pubsub = new PubSub(o.client, { timeout: o.timeout, onError: o.onError })
  return {
    link,
    keys: clusterKeys(o.name),
    pubsub,
    async close () {
      link.dispose()
      await pubsub.close()
    },
  }
}
