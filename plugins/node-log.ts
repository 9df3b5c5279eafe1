// The log of a node started by the CLI (config `log`): Fastify's logger on a buffered destination, and
// the access log as one onResponse hook (none at all with `requests: off`).
import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import pino from 'pino'
import { redactError, type LogConfig } from '../lib/config/index.js'
import { isUpstreamFault } from '../lib/errors.js'
import { accessLine } from '../lib/log/access-line.js'
import { openLogDestination, type LogDestination } from '../lib/log/destination.js'

export interface NodeLog {
  /** Fastify's options for this log (logger instance, request logging). */
  fastifyOptions: Pick<FastifyServerOptions, 'loggerInstance' | 'logController'>
  destination: LogDestination
}

/** Opens the destination; Fastify's two lines per request stay off unless the level is debug or trace. */
export function nodeLog (config: LogConfig): NodeLog {
  const destination = openLogDestination(config.destination)
  const logger = pino({ level: config.level, serializers: { err: redactError } }, destination.loggerStream)
  return {
    fastifyOptions: {
      loggerInstance: logger,
      logController: new GatewayLogController({ disableRequestLogging: config.level !== 'debug' && config.level !== 'trace' }),
    },
    destination,
  }
}

/**
 * Fastify's log controller, except for the proxy's answers to an upstream's fault (502, 503, 504: refused, reset,
 * timed out, no healthy target, open circuits; lib/errors.ts isUpstreamFault): the default error handler logs
 * them at warn, with code and message and no stack, since nothing in the node failed and a dead upstream would
 * otherwise write an error with a stack per request. Every other error is logged as Fastify logs it. The CLI
 * node uses it; an app embedding the gateway passes it as Fastify's `logController` option to get the same.
 */
export class GatewayLogController extends LogController {
  override defaultErrorLog (error: Error, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (!isUpstreamFault(error)) { super.defaultErrorLog(error, request, reply, metadata); return }
    if (this.isLogDisabled(request)) return
    reply.log.warn({ res: reply, code: error.code }, error.message)
  }
}

/** One access line per response, written into the buffered destination when the response ends. */
export function addAccessLog (app: FastifyInstance, destination: LogDestination): void {
  app.addHook('onResponse', function accessLog (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    destination.write(accessLine(request, reply, Date.now()))
    done()
  })
}
