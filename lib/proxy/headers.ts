// Header rules of a proxy (RFC 9110 §7.6.1): hop-by-hop headers and the ones a
// `Connection` header names are not forwarded, in either direction.

import type { TrustFn } from '../trust-proxy.js'

export type HeaderBag = Record<string, string | string[] | number | undefined>

/** Always hop-by-hop, whatever `Connection` says. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding',
  'upgrade', 'proxy-authenticate', 'proxy-authorization',
])
const HOP_LIST = [...HOP_BY_HOP]

/**
 * Does the bag carry a hop-by-hop header (or a `Connection` header)? Property reads only:
 * nothing is allocated when the answer is no, the usual case for responses without Connection.
 */
export function hasHopByHop (headers: HeaderBag): boolean {
  for (let i = 0; i < HOP_LIST.length; i++) if (headers[HOP_LIST[i]] !== undefined) return true
  return false
}

/** The names `Connection` lists, lower-cased (none: empty). */
function connectionNames (conn: string | string[] | number | undefined): string[] | undefined {
  if (conn === undefined) return undefined
  const list = Array.isArray(conn) ? conn.join(',') : String(conn)
  if (list.indexOf(',') < 0) {
    const one = list.trim().toLowerCase()
    // the usual values name no other header
    return one === '' || one === 'keep-alive' || one === 'close' ? undefined : [one]
  }
  const out: string[] = []
  for (const raw of list.split(',')) {
    const name = raw.trim().toLowerCase()
    if (name !== '') out.push(name)
  }
  return out
}

/**
 * Blank hop-by-hop headers (and those listed in `Connection`) in place: each present one is set
 * to undefined, never `delete`d, so the object keeps its fast shape. For bags whose consumer skips
 * undefined values (undici's request headers). Returns the bag.
 */
export function stripHopByHop<T extends HeaderBag> (headers: T): T {
  const bag = headers as HeaderBag
  const named = connectionNames(bag.connection)
  if (named !== undefined) {
    for (let i = 0; i < named.length; i++) if (bag[named[i]] !== undefined) bag[named[i]] = undefined
  }
  for (let i = 0; i < HOP_LIST.length; i++) {
    const name = HOP_LIST[i]
    if (bag[name] !== undefined) bag[name] = undefined
  }
  return headers
}

/**
 * The bag without hop-by-hop headers (and those listed in `Connection`), for a consumer that
 * copies every key (a Fastify reply): the same object when there is nothing to drop, else a new
 * one holding only the end-to-end headers.
 */
export function withoutHopByHop (headers: HeaderBag): HeaderBag {
  if (!hasHopByHop(headers)) return headers
  const named = connectionNames(headers.connection)
  const out: HeaderBag = {}
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined || HOP_BY_HOP.has(name) || (named !== undefined && named.includes(name))) continue
    out[name] = v
  }
  return out
}

/** What the forwarding headers are made of: the client's socket (a net.Socket or TLSSocket). */
export interface ClientSocket {
  readonly remoteAddress?: string
  readonly localPort?: number
  readonly encrypted?: boolean
}

const joinList = (v: string | string[] | number): string => Array.isArray(v) ? v.join(', ') : String(v)

/**
 * The forwarding headers, decided by whether the peer (the socket's address) is a trusted proxy (`trust`,
 * node.trustProxy; undefined: none is). A trusted peer's X-Forwarded-* and Forwarded stand (ours fill what is
 * missing) and its address is appended to X-Forwarded-For. An untrusted peer's are replaced by the gateway's
 * own: X-Forwarded-For and X-Real-IP are the socket address, -Proto, -Host and -Port what this node saw, and
 * Forwarded is dropped. Mutates and returns `headers`.
 */
export function setForwarded<T extends HeaderBag> (headers: T, socket: ClientSocket, host: string | undefined, trust: TrustFn | undefined): T {
  const bag = headers as HeaderBag
  const peer = socket.remoteAddress ?? ''
  const proto = socket.encrypted === true ? 'https' : 'http'
  if (trust !== undefined && trust(peer, 0)) {
    const prior = bag['x-forwarded-for']
    bag['x-forwarded-for'] = prior === undefined || prior === '' ? peer : `${joinList(prior)}, ${peer}`
    if (bag['x-forwarded-proto'] === undefined) bag['x-forwarded-proto'] = proto
    if (bag['x-forwarded-host'] === undefined && host !== undefined) bag['x-forwarded-host'] = host
    if (bag['x-forwarded-port'] === undefined && socket.localPort !== undefined) bag['x-forwarded-port'] = String(socket.localPort)
    return headers
  }
  bag['x-forwarded-for'] = peer
  bag['x-forwarded-proto'] = proto
  bag['x-forwarded-host'] = host // undefined (no Host): not sent
  bag['x-forwarded-port'] = socket.localPort === undefined ? undefined : String(socket.localPort)
  bag['x-real-ip'] = peer
  if (bag.forwarded !== undefined) bag.forwarded = undefined
  return headers
}
