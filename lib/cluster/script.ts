// Lua scripts through ioredis defineCommand: EVALSHA that falls back to EVAL (REDIS.md: replicas lack SCRIPT LOAD).
import type { RedisClient } from './redis-connection.js'

export type ScriptCall = (client: RedisClient, keys: string[], args: Array<string | number>) => Promise<unknown>

/**
 * A script named `name` (unique per script, prefixed `fhg`), defined on a client the first time
 * it runs there. All `keys` must share one hash slot on Redis Cluster.
 */
export function defineScript (name: string, numberOfKeys: number, lua: string): ScriptCall {
  return async (client, keys, args) => {
    const c = client as unknown as Record<string, unknown>
    if (typeof c[name] !== 'function') client.defineCommand(name, { numberOfKeys, lua })
    return await (c[name] as (...a: Array<string | number>) => Promise<unknown>)(...keys, ...args)
  }
}
