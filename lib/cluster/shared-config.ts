// The shared config of one node, without Fastify: which keys are shared, boot precedence, apply, PUT.
//
// Boot precedence (upstreams, routes, rateLimit): the store's document wins; the node's own config (the
// CLI's file) seeds the store only when it holds none; while Redis is down at boot the node serves the
// snapshot of the last config it applied, else its file, and syncs once Redis answers. A document
// applies in full or not at all: every watcher runs in the order it subscribed (the load balancer's
// upstreams first, then the route table, then the rest); one that throws refuses the document and the
// node switches every part back to the version it ran. Boot-only: the limiter's own options
// (rateLimit.onStoreError, storeTimeout, headers, allowList, trustProxy): a PUT that changes them is
// refused naming the key; a stored document that differs is logged and the node keeps its own values.
import { join } from 'node:path'
import { ConfigError, configInput, redactText, turn, validateConfigAsync, type ConfigIssue, type GatewayConfig, type GatewayConfigInput } from '../config/index.js'
import { GatewayError } from '../errors.js'
import { ClusterConfigManager, type ConfigDoc, type ConfigStore } from './config-store.js'
import type { ClusterContext } from './context.js'
import type { RedisClient } from './redis-connection.js'
import { defaultStateDir } from './snapshot.js'

/** The part of the config every node shares through the store (node, cluster, admin, metrics, proxy, drain stay per node). */
export type SharedConfig = Pick<GatewayConfigInput, 'upstreams' | 'routes' | 'rateLimit'>

/** The keys of the config every node shares through the store. */
export const SHARED_CONFIG_KEYS = ['upstreams', 'routes', 'rateLimit'] as const
/** The rate limiter's own options: read once when it registers, so a PUT may not change them (rateLimit.default may). */
export const BOOT_ONLY_RATE_LIMIT_KEYS = ['onStoreError', 'storeTimeout', 'headers', 'allowList', 'trustProxy'] as const

/** A subscriber of applied configs: runs during each apply with the whole effective config; a throw refuses it. */
export type SharedConfigWatcher = (config: GatewayConfig, doc: ConfigDoc<SharedConfig>) => void | Promise<void>

/** What the runtime logs through (pino's shape, a child of the app's logger in the plugin). */
export interface SharedConfigLog {
  info (obj: object | string, msg?: string): void
  warn (obj: object | string, msg?: string): void
  error (obj: object | string, msg?: string): void
}

export interface SharedConfigRuntimeOptions {
  /** The node's normalized config: per-node keys, and the seed of the shared ones. */
  config: GatewayConfig
  /** The node's cluster context (its link says whether Redis is configured and up). */
  context: ClusterContext
  /** The cluster components' client, for boot's wait on Redis's first verdict; undefined: single node, in memory. */
  client: RedisClient | undefined
  /**
   * Without a client: the store that holds the node's document in another process (node.workers: the primary,
   * lib/workers/ipc-config.ts), which judges every write; it is fetched at boot and followed. Default: this
   * process's memory (the node's own config is version 1 at once).
   */
  store?: (onError: (err: Error) => void) => ConfigStore<SharedConfig>
  log: SharedConfigLog
  /** ms boot waits at most for Redis's first verdict. Default 1000; 0: no wait. */
  bootWait?: number
  /** Called after each document applied (boot included): its version, and seconds since its write (undefined at boot). */
  onApplied?: (version: number, propagationSeconds: number | undefined) => void
}

/** The applied document as `current()` gives it. */
export interface AppliedConfig { version: number, config: SharedConfig, updatedAt: number }

export class SharedConfigRuntime {
  /** The node's own config's per-node keys: every shared document is merged into them, then validated whole. */
  private readonly perNode: Record<string, unknown>
  /** The shared keys of the node's own config (the file): the seed, and what the node runs without a store. */
  readonly fileShared: SharedConfig
  readonly snapshotPath: string
  private readonly store: ConfigStore<SharedConfig>
  private applied: AppliedConfig
  /** The effective config this node runs: what a failed apply goes back to. */
  private running: GatewayConfig
  private _refused: { version: number, error: string } | undefined
  private bootApplied = false
  private readonly watchers = new Set<SharedConfigWatcher>()
  /** A PUT validated its document already: the apply that follows on this node reuses the result. */
  private validated: { json: string, config: GatewayConfig } | undefined
  private syncing: Promise<void> | undefined
  private closed = false
  private readonly onLinkUp = (): void => { void this.syncWithStore() }

  /** A runtime on `o.context`; single node (no client, no store): the node's own config is version 1 at once. */
  static async open (o: SharedConfigRuntimeOptions): Promise<SharedConfigRuntime> {
    const rt = new SharedConfigRuntime(o)
    if (o.client === undefined && o.store === undefined) await rt.seedInMemory()
    return rt
  }

  private constructor (private readonly o: SharedConfigRuntimeOptions) {
    const cfg = o.config
    const input = (configInput(cfg) ?? {}) as Record<string, unknown>
    const perNode: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(input)) if (!(SHARED_CONFIG_KEYS as readonly string[]).includes(k)) perNode[k] = v
    perNode.node = { ...(input.node as object | undefined), id: cfg.node.id }
    this.perNode = perNode
    this.fileShared = pickShared(input)
    // default: a private directory of this user (0700), not a predictable name in the shared temp dir
    this.snapshotPath = cfg.cluster.snapshotPath ?? join(defaultStateDir(), `${cfg.cluster.name}-${snapshotName(cfg.node.id)}.json`)
    this.applied = { version: 0, config: this.fileShared, updatedAt: Date.now() }
    this.running = cfg
    const onError = (err: Error): void => { o.log.error({ err }, 'shared config not applied: this node keeps its running config') }
    this.store = o.client === undefined && o.store !== undefined
      ? o.store(onError)
      : new ClusterConfigManager<SharedConfig>(o.context, {
        interval: cfg.cluster.heartbeatInterval,
        snapshotPath: this.snapshotPath,
        snapshotPrivateDir: cfg.cluster.snapshotPath === undefined,
        onError,
      })
    this.store.watch(async (doc) => {
      const initial = !this.bootApplied
      this.bootApplied = true
      await this.apply(doc, initial)
    })
  }

  /** Version this node applies now (0: its own file, never stored). */
  get version (): number { return this.applied.version }

  /** The last version this node refused (invalid here, or failed to apply) and why; cleared by the next good one. */
  get refused (): { version: number, error: string } | undefined {
    return this._refused === undefined ? undefined : { ...this._refused }
  }

  /** The shared config this node applies, as it was written, with its version. */
  current (): AppliedConfig { return { ...this.applied } }

  /** The store's document; this node's own while Redis (or the primary) cannot answer or nothing was stored. */
  async get (): Promise<AppliedConfig> {
    const link = this.o.context.link
    let doc: ConfigDoc<SharedConfig> | undefined
    if (this.inProcess) return { ...this.applied }
    if (this.o.client === undefined) doc = await this.store.get().catch(() => undefined)
    else if (link.enabled && link.up) doc = await this.store.get()
    return doc === undefined ? { ...this.applied } : { version: doc.version, config: doc.config, updatedAt: doc.updatedAt }
  }

  /** The document lives in this process's memory (no Redis, no other process holds it). */
  private get inProcess (): boolean { return this.o.client === undefined && this.o.store === undefined }

  /** Subscribe to applies, in subscription order; returns the unwatch function. */
  watch (fn: SharedConfigWatcher): () => void {
    this.watchers.add(fn)
    return () => { this.watchers.delete(fn) }
  }

  /**
   * Boot with Redis (the plugin's onReady): the store's document, else seed it with the file; Redis silent
   * past bootWait: the snapshot, else the file, and sync once Redis answers. Then follow the store.
   */
  async boot (): Promise<void> {
    if (this.inProcess) return
    if (this.o.client === undefined) {
      // another process holds the document (node.workers: the primary): seed it with the file if it holds none, take its document
      await this.syncWithStore()
      if (!this.closed) this.store.start()
      return
    }
    const up = await firstVerdict(this.o.client, this.o.bootWait ?? 1000)
    if (up) {
      await this.syncWithStore()
    } else {
      const snap = await this.store.loadSnapshot().catch(() => undefined)
      if (snap === undefined) {
        this.o.log.warn({ snapshotPath: this.snapshotPath }, 'redis unavailable at boot and no snapshot: serving this node\'s own config; joining once Redis answers')
      } else {
        try {
          this.bootApplied = true
          await this.apply(snap, true)
          this.store.setCurrent(snap)
          this.o.log.warn({ version: snap.version, snapshotPath: this.snapshotPath }, 'redis unavailable at boot: serving the snapshot; joining once Redis answers')
        } catch (err) {
          this.o.log.error({ err, snapshotPath: this.snapshotPath }, 'snapshot refused: serving this node\'s own config')
        }
      }
    }
    if (this.closed) return
    this.o.context.link.on('up', this.onLinkUp)
    this.store.start()
  }

  /**
   * Validate, then compare-and-set: stored as ifMatchVersion + 1 if the store still holds ifMatchVersion,
   * applied here. Throws ConfigError (invalid or boot-only keys changed; nothing written), the store's
   * errors (conflict, Redis unavailable), or FHG_ERR_CONFIG_NOT_APPLIED (stored, not applied here).
   */
  async put (shared: unknown, ifMatchVersion: number): Promise<{ version: number }> {
    const issues = sharedShapeIssues(shared)
    if (issues.length > 0) throw new ConfigError(issues)
    // everything a node checks before it applies, checked before anything is stored
    const next = await this.effective(shared)
    const frozen = this.bootOnlyIssues(next)
    if (frozen.length > 0) throw new ConfigError(frozen)
    await turn()
    const json = JSON.stringify(shared)
    await turn()
    this.validated = { json, config: next }
    let doc: ConfigDoc<SharedConfig>
    try {
      doc = await this.store.put(JSON.parse(json) as SharedConfig, ifMatchVersion)
    } finally {
      this.validated = undefined
    }
    // a newer version (another writer's, pushed meanwhile) may be applied already: not applied means an older one runs
    if (this.applied.version < doc.version) {
      // valid, stored, but a part of this node failed to switch (logged): it runs its previous version in full
      throw new GatewayError('CONFIG_NOT_APPLIED', `${doc.version} was stored but this node failed to apply it (${this._refused?.error ?? 'see the log'}); it keeps running version ${this.applied.version}`)
    }
    return { version: doc.version }
  }

  async close (): Promise<void> {
    this.closed = true
    this.o.context.link.off('up', this.onLinkUp)
    await this.store.close()
  }

  // ---- internals ----

  private async seedInMemory (): Promise<void> {
    await this.store.seedIfEmpty(this.fileShared)
    this.applied = { ...this.store.current!, config: this.store.current!.config }
    this.bootApplied = true
    this.o.onApplied?.(this.applied.version, undefined)
  }

  private async effective (shared: unknown): Promise<GatewayConfig> {
    return await validateConfigAsync({ ...this.perNode, ...(shared as object) })
  }

  /** Boot-only keys (the rate limiter's own options, read when it registered) that `next` changes against what this node runs. */
  private bootOnlyIssues (next: GatewayConfig): ConfigIssue[] {
    const ran = this.o.config.rateLimit as Record<string, unknown>
    const asked = next.rateLimit as Record<string, unknown>
    return BOOT_ONLY_RATE_LIMIT_KEYS.filter((k) => JSON.stringify(ran[k]) !== JSON.stringify(asked[k]))
      .map((k) => ({ path: `rateLimit.${k}`, message: 'cannot change at runtime (the rate limiter reads it at boot): change it in every node\'s file and restart them; rateLimit.default and routes[].rateLimit do change at runtime' }))
  }

  /** Every watcher switched to `next`, in order; a turn between two, so waiting requests go in between. */
  private async switchTo (next: GatewayConfig, doc: ConfigDoc<SharedConfig>): Promise<void> {
    for (const fn of this.watchers) {
      await fn(next, doc)
      await turn() // promises alone never yield
    }
  }

  /** Apply `doc` in full, or not at all: on any failure the node runs its previous config again, every part of it. */
  private async apply (doc: ConfigDoc<SharedConfig>, initial: boolean): Promise<void> {
    let next: GatewayConfig
    try {
      const v = this.validated
      const json = v === undefined ? undefined : JSON.stringify(doc.config)
      next = v !== undefined && v.json === json ? v.config : await this.effective(doc.config)
      await turn()
    } catch (err) {
      this._refused = { version: doc.version, error: redactText((err as Error).message) }
      throw err // a ConfigError refuses the document: the running config stays
    }
    const drift = this.bootOnlyIssues(next)
    if (drift.length > 0) {
      this.o.log.warn({ version: doc.version, keys: drift.map((i) => i.path) }, 'the shared config changes boot-only keys: this node keeps its own values of them until restarted with the same file')
    }
    const previous = this.running
    const previousDoc: ConfigDoc<SharedConfig> = { ...this.applied, rev: '' }
    try {
      await this.switchTo(next, doc)
    } catch (err) {
      this._refused = { version: doc.version, error: redactText((err as Error).message) }
      this.o.log.error({ err, version: doc.version, running: this.applied.version }, 'shared config failed to apply: going back to the running version')
      try { await this.switchTo(previous, previousDoc) } catch (again) { this.o.log.error({ err: again }, 'going back to the running version failed') }
      throw err
    }
    this.running = next
    this._refused = undefined
    this.applied = { version: doc.version, config: doc.config, updatedAt: doc.updatedAt }
    // Redis's clock at write to ours at apply: what a PUT costs to reach this node
    this.o.onApplied?.(doc.version, initial ? undefined : (Date.now() - doc.updatedAt) / 1000)
    this.o.log.info({ version: doc.version, upstreams: Object.keys(next.upstreams).length }, 'shared config applied')
  }

  /** Seed an empty store with the file, then read it; one at a time, retried when Redis answers again. */
  private async syncWithStore (): Promise<void> {
    this.syncing ??= (async () => {
      try {
        if (this.store.current === undefined) {
          const seeded = await this.store.seedIfEmpty(this.fileShared)
          if (seeded) this.o.log.info('the store held no shared config: seeded it with this node\'s config')
        }
        await this.store.sync(true)
      } catch (err) {
        const next = this.o.client === undefined ? 'serving this node\'s own config until the store sends one' : 'retrying when Redis answers'
        this.o.log.warn({ err: redactText((err as Error).message) }, `shared config sync failed: ${next}`)
      } finally {
        this.syncing = undefined
      }
    })()
    await this.syncing
  }
}

/** A node id as a file name: any character but letters, digits, ".", "_" and "-" becomes "_". */
export function snapshotName (id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, '_')
}

/** The shared keys of a config input, as JSON (what the store keeps). */
export function pickShared (input: Record<string, unknown>): SharedConfig {
  const out: Record<string, unknown> = {}
  for (const k of SHARED_CONFIG_KEYS) if (input[k] !== undefined) out[k] = input[k]
  return JSON.parse(JSON.stringify(out)) as SharedConfig
}

/** What makes `shared` not a shared config at all (not an object, or a per-node key in it). */
export function sharedShapeIssues (shared: unknown): ConfigIssue[] {
  if (typeof shared !== 'object' || shared === null || Array.isArray(shared)) {
    return [{ path: '', message: 'must be an object with upstreams, routes and rateLimit' }]
  }
  return Object.keys(shared).filter((k) => !(SHARED_CONFIG_KEYS as readonly string[]).includes(k))
    .map((k) => ({ path: k, message: 'is not part of the shared config (upstreams, routes, rateLimit): it stays in each node\'s file' }))
}

/** Resolves true once the client is ready, false on its first failure or after `ms`. */
export async function firstVerdict (client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return true
  if (ms <= 0) return false
  return await new Promise<boolean>((resolve) => {
    const done = (v: boolean): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onFail)
      client.off('end', onFail)
      resolve(v)
    }
    const onReady = (): void => done(true)
    const onFail = (): void => done(false)
    const timer = setTimeout(onFail, ms)
    timer.unref()
    client.on('ready', onReady)
    client.on('error', onFail)
    client.on('end', onFail)
  })
}
