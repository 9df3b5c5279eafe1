// ClusterConfigManager: the shared config as one versioned document in Redis, compare-and-set, and watch.
//
// Key `${cluster}:config`, a HASH: version (integer, 1 for the first document), rev (random id of
// the write), config (JSON), updatedAt (epoch-ms, Redis's clock). Every accepted write PUBLISHes
// the new document on `${cluster}:config:changed` from inside the script, so no write goes out
// unannounced: `{"version":N,"rev":"…","updatedAt":T,"config":{…}}` (a bare version number, as older
// nodes sent, is understood too: the node then fetches the document). A notice of a newer version is
// applied as it comes, with no round trip to Redis; anything else (same version, other rev: a write
// lost in a failover and replaced) is fetched. Nodes also pull `version` + `rev` every interval, which
// heals a lost message within one interval (no keyspace notifications). The store keeps JSON;
// validating it is the caller's job (the plugin runs validateConfig before put()).
//
// Replicas (Sentinel, by default): put() resolves only once a replica holds the write, or no replica
// could be promoted without it (minReplicas 'auto'), so a failover cannot lose a version put()
// accepted; see waitReplicas().
//
// Boot precedence (the plugin's): the store's document wins; the CLI's file only seeds an empty
// store (seedIfEmpty); with Redis down the node boots from the snapshot, else from the file.
import { randomBytes } from 'node:crypto'
import { Cluster, type Redis } from 'ioredis'
import { GatewayError } from '../errors.js'
import type { ClusterContext } from './context.js'
import { promotableReplica, sentinelsOf } from './sentinel-replicas.js'
import { defineScript } from './script.js'
import { readJsonFile, writeFileAtomic } from './snapshot.js'
import { Ticker } from './ticker.js'

export interface ConfigDoc<T = unknown> {
  version: number
  /** Random id of the write: tells two documents apart even if a failover reused a version. */
  rev: string
  config: T
  /** epoch-ms of the write (Redis's clock; the local clock for a node without Redis). */
  updatedAt: number
}

/** put() with a stale expected version; `currentVersion` is what the store holds (0: empty). */
export class ConfigConflictError extends GatewayError {
  readonly currentVersion: number
  constructor (currentVersion: number) {
    super('CONFIG_CONFLICT', String(currentVersion))
    this.name = 'ConfigConflictError'
    this.currentVersion = currentVersion
  }

  override toJSON (): ReturnType<GatewayError['toJSON']> & { currentVersion: number } {
    return { ...super.toJSON(), currentVersion: this.currentVersion }
  }
}

/**
 * Called with the new document and the one it replaces. Throw to refuse it: no snapshot is
 * written, the error goes to onError, and the document is not offered again (`current` moves on).
 */
export type ConfigWatcher<T> = (doc: ConfigDoc<T>, previous: ConfigDoc<T> | undefined) => void | Promise<void>

export interface ConfigStoreOptions {
  /** ms between pulls of the version (the heartbeat interval). */
  interval: number
  /** Where the last good document is written after every apply; absent: no snapshot. */
  snapshotPath?: string
  /** The snapshot's directory is made private (0700, this user's) before each write: the default location. Default false. */
  snapshotPrivateDir?: boolean
  /** Write the last known document back when the store is found empty (Redis lost its data). Default true. */
  reseedWhenEmpty?: boolean
  /**
   * Replicas that must hold a write before put() resolves (WAIT; standalone and Sentinel only).
   * A number: that many, always (with no replica up, every put() fails with 503). 'auto': one; when
   * none acknowledges in time, the write is accepted alone only if no replica could take over without
   * it (Sentinel: no replica its Sentinels know, even one down now; standalone: none connected), else put()
   * fails with 503 (the write may survive: read the version before retrying).
   * Default: 'auto' with Sentinel, 0 otherwise.
   */
  minReplicas?: number | 'auto'
  /** ms WAIT may take; capped below the client's commandTimeout and the link's deadline. Default 500. */
  replicaTimeout?: number
  onError?: (err: Error) => void
}

// KEYS[1] config hash. ARGV[1] 'cas' | 'seed'; ARGV[2] expected version (cas) or version to seed with
// (seed); ARGV[3] config JSON; ARGV[4] rev; ARGV[5] channel. Returns { accepted 0|1, version, updatedAt }.
const writeScript = defineScript('fhgConfigWrite', 1, `
local cur = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
local nxt
if ARGV[1] == 'seed' then
  -- SET NX semantics: the file seeds an empty store only
  if redis.call('EXISTS', KEYS[1]) == 1 then return {0, cur, 0} end
  nxt = tonumber(ARGV[2])
else
  -- compare-and-set: the writer must have read the version it replaces
  if tonumber(ARGV[2]) ~= cur then return {0, cur, 0} end
  nxt = cur + 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'version', nxt, 'rev', ARGV[4], 'config', ARGV[3], 'updatedAt', now)
-- announce from inside the script, document included: a write is never left unannounced, and
-- a node applies it without reading it back (ARGV[3] is JSON already; rev is hex)
redis.call('PUBLISH', ARGV[5], '{"version":' .. string.format('%.0f', nxt) .. ',"rev":"' .. ARGV[4] ..
  '","updatedAt":' .. string.format('%.0f', now) .. ',"config":' .. ARGV[3] .. '}')
return {1, nxt, now}
`)

/**
 * What the shared config runtime (shared-config.ts) asks of the store that holds the node's document: this
 * file's ClusterConfigManager (Redis, or this process's memory), or the primary of a `node.workers` node over
 * IPC (lib/workers/ipc-config.ts). put() is compare-and-set, judged by whoever holds the document.
 */
export interface ConfigStore<T = unknown> {
  readonly current: ConfigDoc<T> | undefined
  setCurrent (doc: ConfigDoc<T>): void
  start (): void
  watch (fn: ConfigWatcher<T>): () => void
  get (): Promise<ConfigDoc<T> | undefined>
  put (config: T, expectedVersion: number): Promise<ConfigDoc<T>>
  seedIfEmpty (config: T, version?: number, rev?: string): Promise<boolean>
  sync (fetch?: boolean): Promise<void>
  loadSnapshot (): Promise<ConfigDoc<T> | undefined>
  close (): Promise<void>
}

export class ClusterConfigManager<T = unknown> implements ConfigStore<T> {
  private _current: ConfigDoc<T> | undefined
  private readonly watchers = new Set<ConfigWatcher<T>>()
  private readonly ticker: Ticker
  /** Applies run one at a time, in the order Redis accepted them. */
  private chain: Promise<void> = Promise.resolve()
  private syncQueued = false
  private snapshotChain: Promise<void> = Promise.resolve()
  private unsubscribe: (() => void) | undefined
  private unResubscribed: (() => void) | undefined
  private closed = false
  private readonly onUp = (): void => { this.sync().catch(noop) }
  private readonly onError: (err: Error) => void

  constructor (private readonly ctx: ClusterContext, private readonly o: ConfigStoreOptions) {
    this.onError = o.onError ?? noop
    this.ticker = new Ticker(() => this.sync(), o.interval)
  }

  /** The document this node applies now (from Redis, the snapshot or setCurrent). */
  get current (): ConfigDoc<T> | undefined { return this._current }

  /** Adopt `doc` as applied (booted from a file or snapshot) without calling the watchers. */
  setCurrent (doc: ConfigDoc<T>): void { this._current = doc }

  /** Subscribe to change notices and start the periodic pull; never waits on Redis. */
  start (): void {
    if (this.closed || !this.ctx.link.enabled || this.ticker.active) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.ctx.keys.configChanged, (msg) => { this.onNotice(msg) })
    this.unResubscribed = this.ctx.pubsub.onResubscribed(() => { this.sync().catch(noop) })
    this.ctx.link.on('up', this.onUp)
    this.ticker.start()
  }

  /** `fn` runs for every new document, the local put()s included; returns the unwatch function. */
  watch (fn: ConfigWatcher<T>): () => void {
    this.watchers.add(fn)
    return () => { this.watchers.delete(fn) }
  }

  /** The store's document (undefined: empty). Rejects when Redis cannot answer; without Redis: the current one. */
  async get (): Promise<ConfigDoc<T> | undefined> {
    if (!this.ctx.link.enabled) return this._current
    const h = await this.ctx.link.call('config get', (c) => c.hgetall(this.ctx.keys.config))
    return parseDoc<T>(h)
  }

  /**
   * Compare-and-set: write `config` as version expectedVersion + 1 if the store still holds
   * `expectedVersion` (0: empty), then apply it here. Stale: ConfigConflictError.
   */
  async put (config: T, expectedVersion: number): Promise<ConfigDoc<T>> {
    if (!Number.isInteger(expectedVersion) || expectedVersion < 0) throw new TypeError('expectedVersion must be an integer >= 0')
    const json = JSON.stringify(config)
    const rev = newRev()
    if (!this.ctx.link.enabled) {
      const cur = this._current?.version ?? 0
      if (cur !== expectedVersion) throw new ConfigConflictError(cur)
      const doc: ConfigDoc<T> = { version: cur + 1, rev, config: JSON.parse(json) as T, updatedAt: Date.now() }
      await this.enqueue(() => this.apply(doc))
      return doc
    }
    let [ok, version, updatedAt] = await this.write('cas', expectedVersion, json, rev)
    const cur = this._current
    if (ok !== 1 && version === 0 && cur !== undefined && cur.version === expectedVersion && this.o.reseedWhenEmpty !== false) {
      // Redis lost its data (restarted empty) and no tick has put the document back yet: the writer's
      // expected version is the one this node runs, so restore it first, then judge the write again
      await this.seedIfEmpty(cur.config, cur.version, cur.rev)
      ;[ok, version, updatedAt] = await this.write('cas', expectedVersion, json, rev)
    }
    if (ok !== 1) throw new ConfigConflictError(version)
    await this.waitReplicas()
    const doc: ConfigDoc<T> = { version, rev, config: JSON.parse(json) as T, updatedAt }
    await this.enqueue(() => this.applyIfNew(doc))
    return doc
  }

  /**
   * Write `config` only if the store holds no document (SET NX semantics), as `version`
   * (default 1). Resolves whether it seeded; a node then applies whatever get() returns.
   */
  async seedIfEmpty (config: T, version = 1, rev = newRev()): Promise<boolean> {
    if (!this.ctx.link.enabled) {
      if (this._current !== undefined) return false
      this._current = { version, rev, config, updatedAt: Date.now() }
      return true
    }
    const [ok] = await this.write('seed', version, JSON.stringify(config), rev)
    return ok === 1
  }

  /**
   * Pull the version now (`fetch`: the whole document) and apply it if it is not the current one;
   * coalesces with a sync already queued.
   */
  async sync (fetch = false): Promise<void> {
    if (this.syncQueued || this.closed || !this.ctx.link.enabled) return await this.chain
    this.syncQueued = true
    return await this.enqueue(async () => {
      this.syncQueued = false
      try {
        if (fetch) {
          const doc = await this.get()
          if (doc !== undefined) await this.applyIfNew(doc)
        } else {
          await this.pull()
        }
      } catch {
        // Redis down or slow: the link reported it; the next tick retries
      }
    })
  }

  /** The snapshot, if any (for a boot while Redis is down). */
  async loadSnapshot (): Promise<ConfigDoc<T> | undefined> {
    if (this.o.snapshotPath === undefined) return undefined
    const v = await readJsonFile(this.o.snapshotPath)
    const doc = v as Partial<ConfigDoc<T>> | undefined
    if (doc === undefined || typeof doc !== 'object' || doc === null || !Number.isInteger(doc.version) || doc.config === undefined) return undefined
    return { version: doc.version!, rev: String(doc.rev ?? ''), config: doc.config, updatedAt: Number(doc.updatedAt ?? 0) }
  }

  /** Write `doc` as the snapshot (writes are serialized; the last one wins). */
  async writeSnapshot (doc: ConfigDoc<T>): Promise<void> {
    const path = this.o.snapshotPath
    if (path === undefined) return
    const next = this.snapshotChain.then(() => writeFileAtomic(path, JSON.stringify(doc), { privateDir: this.o.snapshotPrivateDir }))
    this.snapshotChain = next.catch(noop)
    await next
  }

  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe?.()
    this.unResubscribed?.()
    this.ctx.link.off('up', this.onUp)
    await this.ticker.stop()
    await this.chain
    await this.snapshotChain
  }

  private onNotice (msg: string): void {
    const cur = this._current
    const notice = parseNotice<T>(msg)
    if (notice === undefined) { this.sync(true).catch(noop); return }
    if (cur !== undefined && notice.version === cur.version && (notice.rev === undefined || notice.rev === cur.rev)) return
    if (notice.doc !== undefined && (cur === undefined || notice.version > cur.version)) {
      const doc = notice.doc
      // in the chain, behind applies already queued; a pull may have brought a newer one meanwhile
      this.enqueue(async () => {
        if (this.closed || (this._current !== undefined && this._current.version >= doc.version)) return
        await this.apply(doc)
      }).catch(noop)
      return
    }
    // a version we lack without its document, or the same version with another rev: read the store
    this.sync(true).catch(noop)
  }

  private async pull (): Promise<void> {
    const [v, rev] = await this.ctx.link.call('config version', (c) => c.hmget(this.ctx.keys.config, 'version', 'rev'))
    const cur = this._current
    if (v === null) {
      // empty store (Redis restarted without data): put back what this node runs, same version and rev
      if (cur !== undefined && this.o.reseedWhenEmpty !== false) await this.seedIfEmpty(cur.config, cur.version, cur.rev)
      return
    }
    if (cur !== undefined && Number(v) === cur.version && rev === cur.rev) return
    const doc = await this.get()
    if (doc !== undefined) await this.applyIfNew(doc)
  }

  private async applyIfNew (doc: ConfigDoc<T>): Promise<void> {
    const cur = this._current
    if (cur !== undefined && cur.version === doc.version && cur.rev === doc.rev) return
    await this.apply(doc)
  }

  private async apply (doc: ConfigDoc<T>): Promise<void> {
    const previous = this._current
    this._current = doc
    let good = true
    for (const fn of [...this.watchers]) {
      try {
        await fn(doc, previous)
      } catch (err) {
        good = false
        this.onError(err as Error)
      }
    }
    if (good) this.writeSnapshot(doc).catch((err: Error) => this.onError(err))
  }

  private enqueue (fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn)
    this.chain = next.catch(noop)
    return next
  }

  private async write (mode: 'cas' | 'seed', version: number, json: string, rev: string): Promise<[number, number, number]> {
    const res = await this.ctx.link.call(`config ${mode}`, (c) =>
      writeScript(c, [this.ctx.keys.config], [mode, version, json, rev, this.ctx.keys.configChanged]))
    const [ok, v, at] = res as [number, number, number]
    return [Number(ok), Number(v), Number(at)]
  }

  /**
   * The replica guarantee of put(): resolve only once the write is on `minReplicas` replicas. Redis
   * replicates asynchronously: without this, a master killed right after acknowledging a write can
   * be replaced by a replica that never got it, and the next writer reuses the version number.
   */
  private async waitReplicas (): Promise<void> {
    const client = this.ctx.link.client
    if (client === undefined || client instanceof Cluster) return
    const sentinel = sentinelsOf(client)
    const want = this.o.minReplicas ?? (sentinel !== undefined ? 'auto' : 0)
    const n = want === 'auto' ? 1 : want
    if (n <= 0) return
    // WAIT must answer before the client's own commandTimeout and the link's deadline cut it off
    const limits = [this.o.replicaTimeout ?? 500, (client.options.commandTimeout ?? Infinity) - 50, this.ctx.link.timeout - 50]
    const waitMs = Math.max(1, Math.floor(Math.min(...limits)))
    const acked = await this.ctx.link.call('config wait', (c) => (c as typeof client).wait(n, waitMs))
    if (acked >= n) return
    if (want === 'auto' && !(await this.replicaCouldTakeOver(client, sentinel, waitMs))) return
    throw new GatewayError('REDIS_UNAVAILABLE', `config write reached ${acked} of ${n} replicas (it may survive; read the version before retrying)`)
  }

  /**
   * Whether a replica that lacks the last write could become master. Sentinel: any replica its Sentinels
   * know with priority > 0, even one down now (it may resume right after the master dies); no answer: assume so.
   * Standalone: a replica connected to the master.
   */
  private async replicaCouldTakeOver (client: Redis, sentinel: ReturnType<typeof sentinelsOf>, timeout: number): Promise<boolean> {
    if (sentinel !== undefined) return await promotableReplica(sentinel, timeout).catch(() => true)
    const role = await this.ctx.link.call('config role', (c) => (c as Redis).role()) as [string, number, unknown[]]
    return !(role[0] === 'master' && Array.isArray(role[2]) && role[2].length === 0)
  }
}

function parseDoc<T> (h: Record<string, string>): ConfigDoc<T> | undefined {
  if (h.version === undefined || h.config === undefined) return undefined
  return { version: Number(h.version), rev: h.rev ?? '', config: JSON.parse(h.config) as T, updatedAt: Number(h.updatedAt ?? 0) }
}

/** A change notice: the document (current format) or a bare version (older nodes); undefined when unreadable. */
function parseNotice<T> (msg: string): { version: number, rev: string | undefined, doc: ConfigDoc<T> | undefined } | undefined {
  if (/^\d+$/.test(msg)) return { version: Number(msg), rev: undefined, doc: undefined }
  try {
    const n = JSON.parse(msg) as Partial<ConfigDoc<T>>
    if (!Number.isInteger(n.version) || typeof n.rev !== 'string') return undefined
    const doc = n.config === undefined ? undefined : { version: n.version!, rev: n.rev, config: n.config, updatedAt: Number(n.updatedAt ?? 0) }
    return { version: n.version!, rev: n.rev, doc }
  } catch {
    return undefined
  }
}

/** A random id for a write (ConfigDoc.rev). */
export function newRev (): string { return randomBytes(8).toString('hex') }

function noop (): void {}
