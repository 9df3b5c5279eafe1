// Could a replica take over from the master if it died now? Asked of the Sentinels, for the config
// store's replica guarantee (config-store.ts waitReplicas): a write no replica acknowledged is only
// safe to accept when no replica could be promoted without it.
import { Redis } from 'ioredis'
import type { RedisClient } from './redis-connection.js'

/** The Sentinel settings of a client; undefined for a client that is not in Sentinel mode. */
export function sentinelsOf (client: RedisClient): { sentinels: Array<{ host?: string, port?: number }>, name: string, password?: string } | undefined {
  const o = client.options as { sentinels?: Array<{ host?: string, port?: number }> | null, name?: string, sentinelPassword?: string }
  if (!Array.isArray(o.sentinels) || o.sentinels.length === 0 || typeof o.name !== 'string') return undefined
  return { sentinels: o.sentinels, name: o.name, password: o.sentinelPassword }
}

/** Down-after periods past which a down replica no longer blocks writes (Sentinel's own staleness factor is 10). */
export const DOWN_FOR_GOOD = 10

/**
 * True when some Sentinel lists a replica of `name` it could promote (priority > 0), false when the first
 * Sentinel that answers lists none. A replica down or disconnected now still counts until it has been down
 * DOWN_FOR_GOOD down-after periods: it can come back right after the master dies and be promoted without the
 * write (a stopped replica resumed: issue 15, versions [16, 17] reused). Rejects when no Sentinel answers within
 * `timeout` ms each (the caller then assumes the worst).
 */
export async function promotableReplica (s: NonNullable<ReturnType<typeof sentinelsOf>>, timeout: number): Promise<boolean> {
  let last: unknown
  for (const addr of s.sentinels) {
    const conn = new Redis({
      host: addr.host ?? '127.0.0.1', port: addr.port ?? 26379, password: s.password, lazyConnect: true, enableOfflineQueue: false,
      connectTimeout: timeout, commandTimeout: timeout, maxRetriesPerRequest: 0, retryStrategy: () => null,
    })
    conn.on('error', noop)
    try {
      await conn.connect()
      const replicas = await conn.call('SENTINEL', 'REPLICAS', s.name) as Array<Array<string>>
      return replicas.some((fields) => {
        const f = new Map<string, string>()
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i], fields[i + 1])
        if (f.get('slave-priority') === '0' || f.get('replica-priority') === '0') return false
        const flags = (f.get('flags') ?? '').split(',')
        if (!flags.includes('s_down') && !flags.includes('o_down')) return true
        // down: it may resume and be promoted without the write, unless it has been gone past DOWN_FOR_GOOD
        // down-after periods (after a failover the dead old master is listed as a replica; writes must go on)
        const downMs = Number(f.get('s-down-time'))
        const downAfter = Number(f.get('down-after-milliseconds'))
        return !(downMs > DOWN_FOR_GOOD * downAfter)
      })
    } catch (err) {
      last = err
    } finally {
      conn.disconnect() // Sentinel refuses QUIT (REDIS.md)
    }
  }
  throw last instanceof Error ? last : new Error('no sentinel answered')
}

function noop (): void {}
