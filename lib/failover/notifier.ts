import type { FailoverEvent, FailoverEventType } from './events.js'
import { WebhookNotifier, type WebhookNotifierOptions } from './notifier-webhook.js'

/** Receives failover events. notify() must return at once and never throw. */
export interface Notifier {
  notify (event: FailoverEvent): void
  close? (): Promise<void> | void
}

/** The part of a pino logger the log notifier uses. */
export interface LoggerLike {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
}

const WARN: ReadonlySet<FailoverEventType> = new Set(['retries_exhausted', 'fallback_used', 'circuit_opened'])

/** The default notifier: one log line per event, warn for the ones an operator acts on. */
export class LogNotifier implements Notifier {
  constructor (private readonly logger: LoggerLike) {}

  notify (event: FailoverEvent): void {
    const msg = `failover ${event.type} upstream=${event.upstream}`
    if (WARN.has(event.type)) this.logger.warn({ failover: event }, msg)
    else this.logger.info({ failover: event }, msg)
  }
}

/** Calls a function given in code; its throw or rejection is swallowed (reported to onError). */
export class FunctionNotifier implements Notifier {
  constructor (
    private readonly fn: (event: FailoverEvent) => unknown,
    private readonly onError?: (err: unknown) => void,
  ) {}

  notify (event: FailoverEvent): void {
    try {
      const r = this.fn(event)
      if (r instanceof Promise) r.catch((err: unknown) => this.report(err))
    } catch (err) {
      this.report(err)
    }
  }

  private report (err: unknown): void {
    try { this.onError?.(err) } catch { /* nothing left to tell */ }
  }
}

export type NotifierSpec =
  | 'log'
  | { type: 'log' }
  | ({ type: 'webhook' } & WebhookNotifierOptions)
  | ((event: FailoverEvent) => unknown)
  | Notifier

/** Build a notifier from config or code. */
export function createNotifier (spec: NotifierSpec, logger: LoggerLike): Notifier {
  if (typeof spec === 'function') return new FunctionNotifier(spec, (err) => logger.warn({ err }, 'failover notifier failed'))
  if (spec === 'log') return new LogNotifier(logger)
  if ('notify' in spec) return spec
  if (spec.type === 'log') return new LogNotifier(logger)
  return new WebhookNotifier({
    onError: (err, event) => logger.warn({ err, event: event.type }, 'failover webhook failed'),
    ...spec,
  })
}

/**
 * The hub: emit() hands an event to every notifier, each of which only enqueues or logs,
 * so emitting is cheap on a request's path. With no notifier given, events are logged.
 */
export class Notifications {
  private readonly notifiers: Notifier[]

  constructor (notifiers: readonly Notifier[]) {
    this.notifiers = notifiers.slice()
  }

  static from (specs: readonly NotifierSpec[] | undefined, logger: LoggerLike): Notifications {
    const list = specs === undefined || specs.length === 0 ? ['log' as const] : specs
    return new Notifications(list.map((s) => createNotifier(s, logger)))
  }

  add (notifier: Notifier): void { this.notifiers.push(notifier) }

  emit (event: FailoverEvent): void {
    for (const n of this.notifiers) {
      try { n.notify(event) } catch { /* a notifier's bug must not reach the request */ }
    }
  }

  async close (): Promise<void> {
    await Promise.allSettled(this.notifiers.map(async (n) => await n.close?.()))
  }
}
