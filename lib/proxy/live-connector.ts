import { buildConnector } from 'undici'

/**
 * An undici `connect` function whose timeout is read when each connection opens, so a connect
 * timeout changed by config sync applies to an origin's pool that already exists (undici fixes an
 * object `connect: { timeout }` when the pool is made). One connector per distinct timeout value.
 */
export function liveConnector (timeoutOf: () => number, options: Omit<buildConnector.BuildOptions, 'timeout'> = {}): buildConnector.connector {
  const byTimeout = new Map<number, buildConnector.connector>()
  return (opts, callback) => {
    const timeout = timeoutOf()
    let connect = byTimeout.get(timeout)
    if (connect === undefined) {
      connect = buildConnector({ ...options, timeout } as buildConnector.BuildOptions) // 0: none, as undici's own
      byTimeout.set(timeout, connect)
    }
    connect(opts, callback)
  }
}
