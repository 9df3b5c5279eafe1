// Failed-authentication throttle per client: a few failures per second, then every attempt of that
// client is refused (429) until its window ends, without checking the token (so a guess learns nothing).
// Memory is bounded: at most `maxClients` clients are tracked, the least recently failing go first;
// IPv6 clients are tracked by their /64, which one host usually owns whole.
import { isIPv6 } from 'node:net'

export interface AuthThrottleOptions {
  /** Failures allowed per client and window. Default 5. */
  maxFailures?: number
  /** ms. Default 1000. */
  window?: number
  /** Clients tracked at most. Default 10,000. */
  maxClients?: number
}

interface Slot { start: number, failures: number }

export class AuthThrottle {
  readonly maxFailures: number
  readonly window: number
  readonly maxClients: number
  // a Map keeps insertion order: re-inserting a client marks it as the most recent
  private readonly clients = new Map<string, Slot>()

  constructor (o: AuthThrottleOptions = {}) {
    this.maxFailures = o.maxFailures ?? 5
    this.window = o.window ?? 1000
    this.maxClients = o.maxClients ?? 10_000
  }

  /** ms until `ip` may try again, or 0 when it may try now. */
  blockedFor (ip: string, now = Date.now()): number {
    const slot = this.clients.get(clientKey(ip))
    if (slot === undefined || slot.failures < this.maxFailures) return 0
    const left = slot.start + this.window - now
    return left > 0 ? left : 0
  }

  /** Count one failed attempt of `ip`. */
  fail (ip: string, now = Date.now()): void {
    const key = clientKey(ip)
    let slot = this.clients.get(key)
    if (slot !== undefined) this.clients.delete(key)
    if (slot === undefined || now - slot.start >= this.window) slot = { start: now, failures: 0 }
    slot.failures++
    this.clients.set(key, slot)
    if (this.clients.size > this.maxClients) {
      const oldest = this.clients.keys().next().value
      if (oldest !== undefined) this.clients.delete(oldest)
    }
  }

  /** Clients tracked now. */
  get size (): number { return this.clients.size }
}

/** An IPv4 address as is; an IPv6 one by its first four groups (its /64). */
export function clientKey (ip: string): string {
  if (!isIPv6(ip) || ip.startsWith('::ffff:')) return ip
  const [head, tail = ''] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':') + '::/64'
}
