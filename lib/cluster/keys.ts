// Every Redis key and channel of the cluster, in one place: each starts with `${clusterName}:`.
//
// Keys one script or one MGET touches together share a `{hash tag}` so they live in one slot
// and work on Redis Cluster. The tags (`{nodes}`, `{<service>}`) are the same
// across cluster names: clusters sharing one Redis Cluster put their registries in the same
// slot, which is fine for registries of a few hundred entries.

/** Ids, service names and cache-free names that end up inside key names. */
const SAFE_NAME = /^[^\s{}]+$/

export function isKeyPart (value: unknown): value is string {
  return typeof value === 'string' && SAFE_NAME.test(value)
}

export function assertKeyPart (what: string, value: string): string {
  if (!isKeyPart(value)) {
    throw new TypeError(`${what} must be a non-empty string without spaces or braces: ${JSON.stringify(value)}`)
  }
  return value
}

export interface RegistryKeys {
  /** ZSET: member = entry id, score = epoch-ms when its key expires (an index only). */
  index: string
  /** STRING: the entry's JSON, written with SET PX ttl; its existence is what makes the entry live. */
  entry (id: string): string
}

export interface ClusterKeys {
  readonly name: string
  /** Gateway nodes of this cluster (membership). */
  nodes: RegistryKeys
  /** Channel announcing `{ type: 'join' | 'leave', id }` so nodes update their view at once. */
  nodesChannel: string
  /** Instances of a discoverable service. */
  service (service: string): RegistryKeys
  /** Channel naming the service whose instances changed (payload: the service name). */
  servicesChannel: string
  /** HASH { version, rev, config, updatedAt }: the one versioned shared config document. */
  config: string
  /** Channel: PUBLISHed with the new version after every accepted write. */
  configChanged: string
  /** STRING keys of the StateManager: `${name}:state:<key>`. */
  statePrefix: string
  state (key: string): string
  /** HASH { v, d } of one cache entry; `hashed` is a digest of the caller's key (see cache.ts). */
  cacheEntry (hashed: string): string
  /** Channel of cache invalidations: `{ k, v }`. */
  cacheInvalidations: string
  /** Channel of health hints (see health-hints.ts). */
  health: string
}

/** The key builder of the cluster `name` (validated by the config schema: `[A-Za-z0-9._-]+`). */
export function clusterKeys (name: string): ClusterKeys {
  assertKeyPart('cluster name', name)
  const registry = (base: string): RegistryKeys => ({
    index: base,
    entry: (id) => `${base}:${assertKeyPart('id', id)}`,
  })
  return {
    name,
    nodes: registry(`${name}:{nodes}`),
    nodesChannel: `${name}:nodes:events`,
    service: (service) => registry(`${name}:svc:{${assertKeyPart('service', service)}}`),
    servicesChannel: `${name}:svc:changed`,
    config: `${name}:config`,
    configChanged: `${name}:config:changed`,
    statePrefix: `${name}:state:`,
    state: (key) => `${name}:state:${key}`,
    cacheEntry: (hashed) => `${name}:cache:{${hashed}}`,
    cacheInvalidations: `${name}:cache:inv`,
    health: `${name}:health`,
  }
}
