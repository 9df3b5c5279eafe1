// A hard deadline on one store call: a timer race, since a client's own timeout misses a silent Redis on Cluster.
import { GatewayError } from '../errors.js'

/** Why a store call failed: `timeout` (no answer by the deadline) or `failed` (Redis answered with an error, or the connection is gone). */
export class RateLimitStoreError extends GatewayError {
  readonly kind: 'timeout' | 'failed'
  constructor (kind: 'timeout' | 'failed', detail: string, cause?: unknown) {
    super(kind === 'timeout' ? 'RATE_LIMIT_STORE_TIMEOUT' : 'RATE_LIMIT_STORE_FAILED', detail, { cause })
    this.name = 'RateLimitStoreError'
    this.kind = kind
  }
}

/**
 * Settle with `work`, or reject with a `timeout` RateLimitStoreError after `ms`, whichever comes first.
 * The loser is absorbed: a late reply or late error of `work` settles nothing and is never unhandled.
 */
export function withDeadline<T> (work: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // Not unref'd: a caller awaiting the answer must get one even if nothing else keeps the process up (<= ms)
    const timer = setTimeout(() => { reject(new RateLimitStoreError('timeout', String(ms))) }, ms)
    work.then((v) => {
      clearTimeout(timer)
      resolve(v)
    }, (err: unknown) => {
      clearTimeout(timer)
      reject(err instanceof RateLimitStoreError ? err : new RateLimitStoreError('failed', (err as Error)?.message ?? String(err), err))
    })
  })
}
