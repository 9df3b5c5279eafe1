// The messages between the primary of a `node.workers` node and its workers (node:cluster IPC, JSON).
//
// Every message carries `fhg: 1`, so an app's own cluster messages pass by untouched. Rate-limit calls
// travel as tuples, not objects: one IPC message carries a whole tick's batch, and tuples keep it short.
import type { Algorithm, LimitRule } from '../ratelimit/types.js'
import type { Grant } from '../ratelimit/grant.js'
import type { ProbeResult } from '../health/probe.js'
import type { HintKind } from '../health/events.js'
import type { ConfigDoc } from '../cluster/config-store.js'
import type { Alert } from '../monitor/alert.js'
import type { RuleState } from '../monitor/alert-state.js'

/**
 * take: [0, key, algorithm, limit, window, want, min]; refund: [1, key, algorithm, limit, window, units, epoch];
 * outage: [2, degraded 0|1]: the sender's Redis store degraded (1) or recovered (0): the local fallback limiter of
 * policy `local` counts afresh when the first worker of the node degrades.
 */
export type RateLimitCall = KeyCall | readonly [op: 2, degraded: 0 | 1]
/** A take or a refund: a call on one key under one rule. */
export type KeyCall =
  | readonly [op: 0, key: string, algorithm: Algorithm, limit: number, window: number, want: number, min: number]
  | readonly [op: 1, key: string, algorithm: Algorithm, limit: number, window: number, units: number, epoch: number]

/** A grant as the primary answers a take: [allowed 0|1, remaining, resetMs, retryAfterMs, granted, epoch]; a refund: 0. */
export type GrantTuple = readonly [allowed: 0 | 1, remaining: number, resetMs: number, retryAfterMs: number, granted: number, epoch: number]

/** What one worker tells every other worker of its node (through the primary). */
export type Shared =
  | { kind: 'probe', upstream: string, target: string, result: ProbeResult }
  | { kind: 'hint', upstream: string, target: string, hint: HintKind, until: number }

/**
 * A question one worker asks the primary, which holds the node's one copy of it (no Redis): answered once
 * (`answer`). config.*: the node's shared config document, judged compare-and-set by the primary;
 * alerts.*: the node's alert states (lib/monitor/alert-store.ts), committed only by the worker the primary names.
 */
export type HostCall =
  | { op: 'config.seed', config: unknown, version: number }
  | { op: 'config.get' }
  | { op: 'config.put', config: unknown, expected: number }
  | { op: 'alerts.load' }
  | { op: 'alerts.commit', states: Array<[string, RuleState]>, removed: string[], alerts: Alert[] }
  | { op: 'alerts.recent' }

/** The primary's answer to config.put: the document it now holds, or the version that made the write stale. */
export type ConfigPutAnswer = { ok: true, doc: ConfigDoc } | { ok: false, current: number }

/** What the primary gathers from every worker for one answer of the node (summary: the monitor's NodeSummary, for alerts). */
export type GatherWhat = 'metrics' | 'status' | 'summary'

/** The node's summary as the primary gathers it: every worker's part, and how many workers did not answer in time. */
export interface SummaryParts { parts: unknown[], missing: number }

/** A worker's own part of {admin}/status. */
export interface WorkerStatus {
  slot: number
  pid: number
  uptimeSeconds: number
  /** Proxied requests in flight in this worker. */
  inFlight: number
}

export type WorkerMessage =
  | { fhg: 1, t: 'ready' }
  /** `local`: the calls of the node's local fallback limiter (policy `local` while Redis fails), not of its exact one. */
  | { fhg: 1, t: 'rl', id: number, calls: RateLimitCall[], local?: 1 }
  | { fhg: 1, t: 'share', shared: Shared }
  | { fhg: 1, t: 'gather', id: number, what: GatherWhat }
  | { fhg: 1, t: 'report', id: number, data: unknown }
  | { fhg: 1, t: 'call', id: number, call: HostCall }

export type PrimaryMessage =
  | { fhg: 1, t: 'rl', id: number, grants: Array<GrantTuple | 0> }
  | { fhg: 1, t: 'role', slot: number, prober: boolean }
  | { fhg: 1, t: 'share', shared: Shared, from: number }
  | { fhg: 1, t: 'collect', id: number, what: GatherWhat }
  | { fhg: 1, t: 'gathered', id: number, data?: unknown, error?: string }
  | { fhg: 1, t: 'answer', id: number, value?: unknown, error?: string }
  /** The node's config document, pushed to every worker once the primary accepted it (and to a worker that starts listening). */
  | { fhg: 1, t: 'config', doc: ConfigDoc }

/** The node's status as the primary assembles it: every worker and how many were replaced. */
export interface WorkersStatus {
  workers: WorkerStatus[]
  /** Workers that died and were replaced since the node started. */
  replaced: number
}

export function isWorkerMessage (m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && (m as { fhg?: unknown }).fhg === 1 && typeof (m as { t?: unknown }).t === 'string'
}
export const isPrimaryMessage = isWorkerMessage as (m: unknown) => m is PrimaryMessage

export function takeCall (key: string, rule: LimitRule, want: number, min: number): KeyCall {
  return [0, key, rule.algorithm, rule.limit, rule.window, want, min]
}

export function refundCall (key: string, rule: LimitRule, units: number, epoch: number): KeyCall {
  return [1, key, rule.algorithm, rule.limit, rule.window, units, epoch]
}

export function toGrantTuple (g: Grant): GrantTuple {
  return [g.allowed ? 1 : 0, g.remaining, g.resetMs, g.retryAfterMs, g.granted, g.epoch]
}

export function fromGrantTuple (t: GrantTuple): Grant {
  return { allowed: t[0] === 1, remaining: t[1], resetMs: t[2], retryAfterMs: t[3], granted: t[4], epoch: t[5] }
}

export function outageCall (degraded: boolean): RateLimitCall {
  return [2, degraded ? 1 : 0]
}

/** The rule a take or refund names (leaseSize plays no part in the primary: the worker's LeaseStore sizes its slices). */
export function ruleOf (c: KeyCall): LimitRule {
  return { algorithm: c[2], limit: c[3], window: c[4] }
}

/** A worker's end of the IPC: `process` in a cluster worker; tests give a fake. */
export interface Channel<Out, In> {
  send (msg: Out): void
  onMessage (fn: (msg: In) => void): () => void
}

/** The worker side of the cluster IPC channel (process.send / process.on('message')). */
export function processChannel (): Channel<WorkerMessage, PrimaryMessage> {
  return {
    send (msg) { process.send?.(msg) },
    onMessage (fn) {
      const on = (m: unknown): void => { if (isPrimaryMessage(m)) fn(m) }
      process.on('message', on)
      return () => { process.off('message', on) }
    },
  }
}
