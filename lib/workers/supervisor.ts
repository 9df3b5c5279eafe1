// The primary of a `node.workers: N` node: forks N workers that share one listening port (node:cluster)
// and serves no HTTP itself. It replaces a worker that dies (logged, counted), holds the rate-limit
// counters, the config document and the alert states when there is no Redis (limit-host.ts, host-calls.ts),
// and the local fallback limiter while Redis fails (policy `local`), relays what one worker shares with the
// others (probe results, ejections and open circuits), pushes each accepted config to every worker, gathers
// the node's /metrics, status and monitor summary from every worker, and on SIGTERM drains every worker and
// exits once all have exited.
import cluster, { type Worker } from 'node:cluster'
import { HostCalls, type HostAnswer } from './host-calls.js'
import { LimitHost } from './limit-host.js'
import { mergeMetrics, type MetricsJson } from './metrics-merge.js'
import { isWorkerMessage, type GatherWhat, type SummaryParts, type HostCall, type PrimaryMessage, type Shared, type WorkerMessage, type WorkerStatus, type WorkersStatus } from './protocol.js'

export interface SupervisorLog {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export interface SupervisorOptions {
  workers: number
  log: SupervisorLog
  /** Environment added to every worker's (the CLI passes the node id, so every worker is the same node). */
  env?: Record<string, string>
  /** Hold the node's rate-limit counters (no Redis). Default true. */
  limits?: boolean
  /** ms the primary waits for each worker's part of a gathered answer (default 1000). */
  gatherTimeout?: number
  /** ms after SIGTERM past which a worker still running is killed (default 60 s). */
  killAfter?: number
  /** ms before a worker that died is forked again when the last one died early (crash loop; default 1000). */
  restartDelay?: number
}

interface Slot {
  readonly slot: number
  worker: Worker
  ready: boolean
  startedAt: number
  prober: boolean
}

interface Gathering {
  readonly what: GatherWhat
  readonly from: Worker
  readonly replyId: number
  readonly parts: Map<number, unknown>
  readonly waiting: Set<number>
  readonly timer: NodeJS.Timeout
}

export class Supervisor {
  /** Workers that died and were replaced. */
  replaced = 0
  readonly limits: LimitHost | undefined
  /** The node's local fallback limiter (onStoreError `local` while Redis fails): made when a worker first needs it. */
  fallback: LimitHost | undefined
  readonly #o: SupervisorOptions
  readonly #slots = new Map<number, Slot>()
  readonly #gathers = new Map<number, Gathering>()
  #nextGather = 1
  #stopping = false
  #booted = false
  /** What only the primary answers: the node's config document and alert states without Redis. */
  readonly #calls = new HostCalls()
  /** The last probe result of each target: a worker that starts (a replacement) takes them at once. */
  readonly #probes = new Map<string, Shared>()

  constructor (opts: SupervisorOptions) {
    if (!cluster.isPrimary) throw new Error('Supervisor runs in the primary process')
    this.#o = opts
    this.limits = opts.limits === false ? undefined : new LimitHost()
  }

  get workers (): number { return this.#slots.size }

  /** Fork every worker; resolves once all listen, rejects (after stopping the others) if one exits first. */
  async start (): Promise<void> {
    const boot = new Promise<void>((resolve, reject) => {
      this.#onBoot = { resolve, reject }
    })
    for (let s = 1; s <= this.#o.workers; s++) this.#fork(s)
    await boot
    this.#booted = true
  }

  #onBoot: { resolve: () => void, reject: (err: Error) => void } | undefined

  /** SIGTERM every worker (each drains), and resolve the exit code once all exited: 0 when every one exited 0. */
  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    this.#stopping = true
    let code = 0
    const all = [...this.#slots.values()].map(async (s) => await new Promise<void>((resolve) => {
      const w = s.worker
      if (w.isDead()) { resolve(); return }
      w.once('exit', (c: number | null) => {
        if (c !== 0) code = 1 // a worker that did not drain to exit 0 (or was killed past killAfter)
        resolve()
      })
      w.process.kill(signal)
    }))
    const killer = setTimeout(() => {
      for (const s of this.#slots.values()) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL')
    }, this.#o.killAfter ?? 60_000)
    killer.unref()
    await Promise.all(all)
    clearTimeout(killer)
    await this.limits?.close()
    await this.fallback?.close()
    return code
  }

  #fork (slot: number): void {
    const worker = cluster.fork({ ...this.#o.env, FHG_WORKER_SLOT: String(slot) })
    const s: Slot = { slot, worker, ready: false, startedAt: Date.now(), prober: false }
    this.#slots.set(slot, s)
    worker.on('message', (m: unknown) => { if (isWorkerMessage(m)) this.#receive(s, m) })
    // a send to a worker that is exiting fails (EPIPE) as an event: the exit handler deals with the worker
    worker.on('error', (err: Error) => { if (!this.#stopping) this.#o.log.warn({ worker: slot, err: err.message }, 'worker channel error') })
    worker.once('exit', (code: number | null, signal: string | null) => { this.#exited(s, code, signal) })
  }

  #exited (s: Slot, code: number | null, signal: string | null): void {
    if (this.#slots.get(s.slot) !== s) return
    const wasReady = s.ready
    s.ready = false
    this.fallback?.left(s.slot)
    for (const g of this.#gathers.values()) if (g.waiting.delete(s.worker.id)) this.#maybeAnswer(g)
    if (this.#stopping) return
    if (!this.#booted && this.#onBoot !== undefined) {
      // a worker that cannot boot (a taken port, a bad file): the node does not start, as with one process
      this.#o.log.error({ worker: s.slot, pid: s.worker.process.pid, code, signal }, 'worker exited before listening: stopping the node')
      const fail = this.#onBoot
      this.#onBoot = undefined
      void this.stop().then(() => { fail.reject(new Error(`worker ${s.slot} exited (${code ?? signal}) before listening`)) })
      return
    }
    this.replaced++
    const early = !wasReady || Date.now() - s.startedAt < 1000
    this.#o.log.warn({ worker: s.slot, pid: s.worker.process.pid, code, signal, replaced: this.replaced }, 'worker died: starting a replacement')
    this.#roles()
    const again = (): void => { if (!this.#stopping) this.#fork(s.slot) }
    if (early) setTimeout(again, this.#o.restartDelay ?? 1000).unref()
    else again()
  }

  #receive (s: Slot, m: WorkerMessage): void {
    switch (m.t) {
      case 'ready':
        s.ready = true
        this.#roles()
        // a worker that starts listening runs the node's config (it fetched it at boot; a PUT may have passed since)
        if (this.#calls.config !== undefined) this.#send(s.worker, { fhg: 1, t: 'config', doc: this.#calls.config })
        for (const p of this.#probes.values()) this.#send(s.worker, { fhg: 1, t: 'share', shared: p, from: 0 })
        if (!this.#booted && [...this.#slots.values()].every((x) => x.ready) && this.#slots.size === this.#o.workers) {
          const ok = this.#onBoot
          this.#onBoot = undefined
          ok?.resolve()
        }
        return
      case 'rl': {
        const host = m.local === 1 ? (this.fallback ??= new LimitHost()) : this.limits
        const grants = host === undefined ? m.calls.map(() => 0 as const) : host.handle(m.calls, s.slot)
        this.#send(s.worker, { fhg: 1, t: 'rl', id: m.id, grants })
        return
      }
      case 'share':
        if (m.shared.kind === 'probe') this.#probes.set(`${m.shared.upstream}\n${m.shared.target}`, m.shared)
        for (const o of this.#slots.values()) if (o !== s && o.ready) this.#send(o.worker, { fhg: 1, t: 'share', shared: m.shared, from: s.slot })
        return
      case 'gather':
        this.#gather(s.worker, m.id, m.what)
        return
      case 'call':
        this.#call(s, m.id, m.call)
        return
      case 'report': {
        const g = this.#gathers.get(m.id)
        if (g === undefined || !g.waiting.delete(s.worker.id)) return
        g.parts.set(s.slot, m.data)
        this.#maybeAnswer(g)
      }
    }
  }

  /** A question only the primary answers; an accepted config goes to every other worker that listens. */
  #call (s: Slot, id: number, call: HostCall): void {
    const reply = (a: HostAnswer): void => {
      // the writer first (its answer), then the others: each worker gets versions in the order accepted
      this.#send(s.worker, { fhg: 1, t: 'answer', id, ...(a.error === undefined ? { value: a.value } : { error: a.error }) })
      if (a.push !== undefined) for (const o of this.#slots.values()) if (o !== s && o.ready) this.#send(o.worker, { fhg: 1, t: 'config', doc: a.push })
    }
    const a = this.#calls.handle(call, { slot: s.slot, evaluator: s.prober })
    if (a instanceof Promise) a.then(reply, (err: unknown) => { reply({ error: (err as Error).message }) })
    else reply(a)
  }

  /** The prober is the ready worker of the lowest slot: active probes run once per node. */
  #roles (): void {
    let prober: Slot | undefined
    for (const s of this.#slots.values()) if (s.ready && (prober === undefined || s.slot < prober.slot)) prober = s
    let changed = false
    for (const s of this.#slots.values()) {
      if (!s.ready) continue
      const is = s === prober
      if (is !== s.prober) {
        s.prober = is
        changed ||= is
        this.#send(s.worker, { fhg: 1, t: 'role', slot: s.slot, prober: is })
      }
    }
    if (changed && prober !== undefined) this.#o.log.info({ worker: prober.slot, pid: prober.worker.process.pid }, 'active probes run in this worker')
  }

  #gather (from: Worker, replyId: number, what: GatherWhat): void {
    const id = this.#nextGather++
    const waiting = new Set<number>()
    const timer = setTimeout(() => { this.#answer(id) }, this.#o.gatherTimeout ?? 1000)
    timer.unref()
    const g: Gathering = { what, from, replyId, parts: new Map(), waiting, timer }
    this.#gathers.set(id, g)
    for (const s of this.#slots.values()) {
      if (!s.ready) continue
      waiting.add(s.worker.id)
      this.#send(s.worker, { fhg: 1, t: 'collect', id, what })
    }
    this.#maybeAnswer(g)
  }

  #maybeAnswer (g: Gathering): void {
    if (g.waiting.size > 0) return
    for (const [id, x] of this.#gathers) if (x === g) this.#answer(id)
  }

  #answer (id: number): void {
    const g = this.#gathers.get(id)
    if (g === undefined) return
    this.#gathers.delete(id)
    clearTimeout(g.timer)
    const reply = (data: unknown, error?: string): void => {
      if (!g.from.isDead()) this.#send(g.from, { fhg: 1, t: 'gathered', id: g.replyId, data, ...(error === undefined ? {} : { error }) })
    }
    if (g.what === 'summary') {
      // a worker that did not answer in time is named: the evaluator skips a round it cannot see whole
      reply({ parts: [...g.parts.entries()].sort(([a], [b]) => a - b).map(([, p]) => p), missing: g.waiting.size } satisfies SummaryParts)
      return
    }
    if (g.what === 'status') {
      const workers = [...g.parts.values()] as WorkerStatus[]
      workers.sort((a, b) => a.slot - b.slot)
      reply({ workers, replaced: this.replaced } satisfies WorkersStatus)
      return
    }
    mergeMetrics([...g.parts.values()] as MetricsJson[]).then((m) => { reply(m) }, (err: unknown) => { reply(undefined, (err as Error).message) })
  }

  #send (w: Worker, m: PrimaryMessage): void {
    if (w.isDead() || !w.isConnected()) return
    try { w.send(m) } catch {}
  }
}
