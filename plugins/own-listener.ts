// A listener of its own for some of the app's routes (admin.listen, metrics.listen), as Envoy's admin
// port: a second Fastify instance whose handlers read the app's state, started when the app is ready
// (a port that cannot be bound fails the app's boot, naming the key) and closed when the app closes.
// Routes given a listener are not registered on the app, so the traffic port never serves them.
import Fastify, { type FastifyInstance } from 'fastify'
import { parseListen } from '../lib/config/listen.js'

// one instance per app and address: admin and metrics may share a port
const listeners = new WeakMap<FastifyInstance, Map<string, FastifyInstance>>()

/** The instance that serves `listen` (host:port) alongside `app`; `path` names the config key in errors. */
export function ownListener (app: FastifyInstance, listen: string, path: string): FastifyInstance {
  const { host, port } = parseListen(listen, path)
  let byAddress = listeners.get(app)
  if (byAddress === undefined) listeners.set(app, byAddress = new Map())
  const key = `${host}:${port}`
  const existing = byAddress.get(key)
  if (existing !== undefined) return existing
  const c = app.initialConfig
  const side = Fastify({
    loggerInstance: app.log.child({ listener: listen }),
    bodyLimit: c.bodyLimit,
    connectionTimeout: c.connectionTimeout,
    keepAliveTimeout: c.keepAliveTimeout,
    requestTimeout: (c as { requestTimeout?: number }).requestTimeout,
    // idle keep-alive sockets (a scraper's) must not hold the app's close
    forceCloseConnections: 'idle',
  })
  byAddress.set(key, side)
  app.addHook('onReady', async () => {
    try {
      // not "Server listening at": that line names the traffic port (tools and the CLI tests read it)
      await side.listen({ host, port, listenTextResolver: (address) => `${path}: ${address}` })
    } catch (err) {
      throw new Error(`${path}: cannot listen on ${listen}: ${(err as Error).message}`, { cause: err })
    }
  })
  app.addHook('onClose', async () => {
    byAddress.delete(key)
    await side.close()
  })
  return side
}
