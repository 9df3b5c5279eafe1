// Header rules of a proxy (RFC 9110 §7.6.1): hop-by-hop headers and the ones a
// `Connection` header names are not forwarded, in either direction.

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

/**
 * Set X-Forwarded-For (appending the client address to what came in),
 * X-Forwarded-Proto and X-Forwarded-Host. Mutates and returns `headers`.
 */
export function setForwarded<T extends HeaderBag> (headers: T, clientIp: string | undefined, proto: string, host: string | undefined): T {
  const prior = headers['x-forwarded-for']
  const ip = clientIp ?? ''
  const bag = headers as HeaderBag
  if (prior === undefined || prior === '') {
    bag['x-forwarded-for'] = ip
  } else {
    bag['x-forwarded-for'] = `${Array.isArray(prior) ? prior.join(', ') : String(prior)}, ${ip}`
  }
  bag['x-forwarded-proto'] = proto
  if (host !== undefined && bag['x-forwarded-host'] === undefined) bag['x-forwarded-host'] = host
  return headers
}
