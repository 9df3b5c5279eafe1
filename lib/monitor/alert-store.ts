// Where the cluster's alert state lives: the evaluator lease, each rule's state and the recent alerts.
//
// Redis (one hash slot, so one script writes them together):
//   <cluster>:{alerts}:lease    STRING holder node id, PX = 3 × alerts.interval
//   <cluster>:{alerts}:state    HASH   rule name -> RuleState JSON
//   <cluster>:{alerts}:recent   LIST   the last RECENT_ALERTS notifications (JSON), newest first
// A commit writes only while its node holds the lease (checked in the script): a node that lost the
// lease mid-evaluation sends nothing, so two evaluators never both notify.
import type { RedisLink } from '../cluster/redis-link.js'
import { defineScript } from '../cluster/script.js'
import { leaseScript, releaseScript } from '../cluster/shared-probes.js'
import { parseRuleState, type RuleState } from './alert-state.js'
import type { Alert } from './alert.js'

export const RECENT_ALERTS = 50

export interface AlertStore {
  /** Take or keep the evaluator lease for `ttl` ms; resolves the holder (undefined: nobody, or no answer). */
  acquire (nodeId: string, ttl: number): Promise<string | undefined>
  release (nodeId: string): Promise<void>
  load (): Promise<Map<string, RuleState>>
  /** Writes states, drops `removed`, records `alerts`, only while `nodeId` holds the lease; false: it does not. */
  commit (nodeId: string, ttl: number, states: Map<string, RuleState>, removed: string[], alerts: Alert[]): Promise<boolean>
  recent (): Promise<Alert[]>
}

// KEYS lease, state, recent; ARGV[1] node id, ARGV[2] ttl ms, ARGV[3] JSON { set, del, push }, ARGV[4] recent kept
const commitScript = defineScript('fhgAlertCommit', 3, `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local c = cjson.decode(ARGV[3])
for k, v in pairs(c.set) do redis.call('HSET', KEYS[2], k, v) end
for _, k in ipairs(c.del) do redis.call('HDEL', KEYS[2], k) end
for _, a in ipairs(c.push) do redis.call('LPUSH', KEYS[3], a) end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return 1
`)

export class RedisAlertStore implements AlertStore {
  private readonly lease: string
  private readonly state: string
  private readonly list: string

  constructor (private readonly link: RedisLink, clusterName: string) {
    this.lease = `${clusterName}:{alerts}:lease`
    this.state = `${clusterName}:{alerts}:state`
    this.list = `${clusterName}:{alerts}:recent`
  }

  async acquire (nodeId: string, ttl: number): Promise<string | undefined> {
    const holder = await this.link.call('alerts lease', (c) => leaseScript(c, [this.lease], [nodeId, Math.ceil(ttl)]))
    return typeof holder === 'string' ? holder : undefined
  }

  async release (nodeId: string): Promise<void> {
    await this.link.call('alerts release', (c) => releaseScript(c, [this.lease], [nodeId]))
  }

  async load (): Promise<Map<string, RuleState>> {
    const raw = await this.link.call('alerts state', (c) => c.hgetall(this.state))
    return new Map(Object.entries(raw).map(([k, v]) => [k, parseRuleState(v)]))
  }

  async commit (nodeId: string, ttl: number, states: Map<string, RuleState>, removed: string[], alerts: Alert[]): Promise<boolean> {
    const set: Record<string, string> = {}
    for (const [k, v] of states) set[k] = JSON.stringify(v)
    // oldest first, so LPUSH leaves the newest at the head
    const body = JSON.stringify({ set, del: removed, push: alerts.map((a) => JSON.stringify(a)) })
    const ok = await this.link.call('alerts commit', (c) => commitScript(c, [this.lease, this.state, this.list], [nodeId, Math.ceil(ttl), body, RECENT_ALERTS]))
    return ok === 1
  }

  async recent (): Promise<Alert[]> {
    const raw = await this.link.call('alerts recent', (c) => c.lrange(this.list, 0, RECENT_ALERTS - 1))
    const out: Alert[] = []
    for (const r of raw) { try { out.push(JSON.parse(r) as Alert) } catch {} }
    return out
  }
}

/** One node alone (no Redis): it always holds the lease. */
export class MemoryAlertStore implements AlertStore {
  private readonly states = new Map<string, RuleState>()
  private readonly alerts: Alert[] = []

  async acquire (nodeId: string): Promise<string> { return nodeId }
  async release (): Promise<void> {}
  async load (): Promise<Map<string, RuleState>> { return new Map(this.states) }

  async commit (_nodeId: string, _ttl: number, states: Map<string, RuleState>, removed: string[], alerts: Alert[]): Promise<boolean> {
    for (const [k, v] of states) this.states.set(k, v)
    for (const k of removed) this.states.delete(k)
    this.alerts.unshift(...alerts.slice().reverse())
    this.alerts.length = Math.min(this.alerts.length, RECENT_ALERTS)
    return true
  }

  async recent (): Promise<Alert[]> { return this.alerts.slice() }
}
