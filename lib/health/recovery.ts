import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { GatewayError } from '../errors.js'
import type { PoolChange } from '../upstream/pool.js'
import type { Target } from '../upstream/target.js'
import type { TransitionEvent, Unsubscribe } from './events.js'
import { errorLabel, probeDeadline } from './probe.js'
import type { PoolHealth } from './state.js'

/** What a recovery action is told; also the webhook's JSON body (without `signal`). */
export interface RecoveryContext {
  upstream: string
  target: string
  url: string
  /** epoch-ms the target turned unhealthy */
  since: number
  reason: string
  lastError: string | null
}

/** A recovery action given in code, e.g. asking an orchestrator to restart the target. Rejecting = failed. */
export type RecoveryAction = (ctx: RecoveryContext, signal: AbortSignal) => unknown

/** `healthCheck.recovery`, durations already in ms. */
export interface RecoveryOptions {
  /** How long a target must stay unhealthy before the first attempt. */
  after: number
  /** Least time between two attempts for the same target. */
  cooldown: number
  webhook?: { url: string, timeout: number, headers?: Record<string, string> }
  action?: RecoveryAction
  /** Code only: deadline of `action` in ms; default the webhook timeout, else 10 s. */
  timeout?: number
}

const DEFAULT_ACTION_TIMEOUT = 10_000

interface Watch {
  timer: NodeJS.Timeout | undefined
  attempts: number
  lastAttemptAt: number
  running: boolean
}

/**
 * AutoRecovery (the seed article's AutoRecoveryManager, filled in): a target unhealthy
 * for `after` ms triggers the webhook and/or action, then again every `cooldown` ms while
 * it stays unhealthy. Each attempt and its outcome is an event. Actions run off the
 * request path with a deadline; their failures are reported, never thrown.
 * Both webhook and action may be set: both run, the attempt is ok when both succeed.
 */
export class AutoRecovery {
  readonly health: PoolHealth
  private readonly options: RecoveryOptions
  private readonly watches = new Map<Target, Watch>()
  private unsubscribe: Unsubscribe | undefined
  private agent: Agent | undefined
  private abort = new AbortController()
  private readonly onPoolChange = (c: PoolChange): void => {
    if (c.type === 'removed') this.unwatch(c.target)
  }

  constructor (health: PoolHealth, options: RecoveryOptions) {
    if (options.webhook === undefined && options.action === undefined) {
      throw new GatewayError('INVALID_CONFIG', 'healthCheck.recovery needs a webhook or an action')
    }
    if (!(options.after >= 0) || !(options.cooldown > 0)) {
      throw new GatewayError('INVALID_CONFIG', 'healthCheck.recovery.after must be >= 0 ms and cooldown > 0 ms')
    }
    this.health = health
    this.options = options
  }

  start (): void {
    if (this.unsubscribe !== undefined) return
    this.abort = new AbortController()
    this.unsubscribe = this.health.events.on('transition', (e) => this.onTransition(e))
    this.health.pool.on('change', this.onPoolChange)
    for (const t of this.health.pool.targets) {
      if (t.status === 'unhealthy') this.watch(t)
    }
  }

  async stop (): Promise<void> {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.health.pool.off('change', this.onPoolChange)
    for (const t of [...this.watches.keys()]) this.unwatch(t)
    this.abort.abort()
    const agent = this.agent
    this.agent = undefined
    if (agent !== undefined) await agent.destroy().catch(() => {})
  }

  /** Attempts made so far for `target` while it is in the pool. */
  attempts (target: Target): number { return this.watches.get(target)?.attempts ?? 0 }

  private onTransition (e: TransitionEvent): void {
    if (this.health.pool.get(e.target.id) !== e.target) return // another pool on a shared registry
    if (e.to === 'unhealthy') this.watch(e.target)
    else if (e.from === 'unhealthy') this.pause(e.target)
  }

  private watch (target: Target): void {
    let w = this.watches.get(target)
    if (w === undefined) {
      w = { timer: undefined, attempts: 0, lastAttemptAt: 0, running: false }
      this.watches.set(target, w)
    }
    this.arm(target, w, Date.now())
  }

  /** Healthy again: stop the timer but keep lastAttemptAt, so a flapping target still waits its cooldown. */
  private pause (target: Target): void {
    const w = this.watches.get(target)
    if (w?.timer !== undefined) clearTimeout(w.timer)
    if (w !== undefined) w.timer = undefined
  }

  private unwatch (target: Target): void {
    this.pause(target)
    this.watches.delete(target)
  }

  /** Next attempt: after `after` of unhealthiness and `cooldown` since the last attempt. */
  private arm (target: Target, w: Watch, now: number): void {
    if (w.timer !== undefined) clearTimeout(w.timer)
    const since = this.health.record(target).since
    const due = Math.max(since + this.options.after, w.lastAttemptAt === 0 ? 0 : w.lastAttemptAt + this.options.cooldown)
    w.timer = setTimeout(() => this.fire(target, w), Math.max(0, due - now))
    w.timer.unref()
  }

  private fire (target: Target, w: Watch): void {
    w.timer = undefined
    if (this.watches.get(target) !== w) return
    const r = this.health.record(target)
    if (r.status !== 'unhealthy') return
    // One attempt at a time; its completion arms the next one.
    if (!w.running) void this.attempt(target, w, Date.now())
  }

  private async attempt (target: Target, w: Watch, now: number): Promise<void> {
    const r = this.health.record(target)
    const attempt = ++w.attempts
    w.lastAttemptAt = now
    w.running = true
    const upstream = this.health.upstream
    const ctx: RecoveryContext = {
      upstream, target: target.id, url: target.url, since: r.since, reason: r.reason, lastError: r.lastError ?? null,
    }
    this.health.events.emit({ type: 'recovery_attempt', upstream, target, attempt, unhealthySince: r.since, at: now })
    const start = performance.now()
    const errors: string[] = []
    const runs: Array<Promise<void>> = []
    if (this.options.webhook !== undefined) runs.push(this.callWebhook(ctx).catch((e: unknown) => { errors.push(`webhook: ${errorLabel(e)}`) }))
    if (this.options.action !== undefined) runs.push(this.callAction(ctx).catch((e: unknown) => { errors.push(`action: ${errorLabel(e)}`) }))
    await Promise.all(runs)
    w.running = false
    if (this.abort.signal.aborted) return
    if (this.watches.get(target) === w && this.health.record(target).status === 'unhealthy') this.arm(target, w, Date.now())
    const ok = errors.length === 0
    this.health.events.emit({
      type: 'recovery_result', upstream, target, attempt, ok, durationMs: performance.now() - start,
      ...(ok ? {} : { error: errors.join('; ') }), at: Date.now(),
    })
  }

  private async callWebhook (ctx: RecoveryContext): Promise<void> {
    const hook = this.options.webhook as NonNullable<RecoveryOptions['webhook']>
    this.agent ??= new Agent({ connections: 4, connect: { timeout: hook.timeout } })
    const deadline = probeDeadline(hook.timeout, this.abort.signal)
    try {
      const res = await request(hook.url, {
        method: 'POST',
        dispatcher: this.agent,
        signal: deadline.signal,
        headers: { 'content-type': 'application/json', ...hook.headers },
        body: JSON.stringify(ctx),
      })
      await res.body.dump({ limit: 64 * 1024 })
      if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`status ${res.statusCode}`)
    } catch (err) {
      throw deadline.timedOut() ? new Error(`timeout after ${hook.timeout}ms`) : err
    } finally {
      deadline.done()
    }
  }

  private async callAction (ctx: RecoveryContext): Promise<void> {
    const action = this.options.action as RecoveryAction
    const timeout = this.options.timeout ?? this.options.webhook?.timeout ?? DEFAULT_ACTION_TIMEOUT
    const deadline = probeDeadline(timeout, this.abort.signal)
    try {
      // A hanging action cannot be cancelled; we stop waiting and tell it through the signal.
      await new Promise<void>((resolve, reject) => {
        deadline.signal.addEventListener('abort', () => reject(new Error(`timeout after ${timeout}ms`)), { once: true })
        Promise.resolve().then(() => action(ctx, deadline.signal)).then(() => resolve(), reject)
      })
    } finally {
      deadline.done()
    }
  }
}
