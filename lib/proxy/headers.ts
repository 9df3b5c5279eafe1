// Header rules of a proxy (RFC 9110 §7.6.1): hop-by-hop headers and the ones a
// `Connection` header names are not forwarded, in either direction.

export type HeaderBag = Record<string, string | string[] | number | undefined>

/** Always hop-by-hop, whatever `Connection` says. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding',
  'upgrade', 'proxy-authenticate', 'proxy-authorization',
])

/** Delete hop-by-hop headers (and those listed in `Connection`) in place; returns the bag. */
export function stripHopByHop<T extends HeaderBag> (headers: T): T {
  const conn = headers.connection
  if (conn !== undefined) {
    const list = Array.isArray(conn) ? conn.join(',') : String(conn)
    for (const raw of list.split(',')) {
      const name = raw.trim().toLowerCase()
      if (name !== '') delete headers[name]
    }
  }
  for (const name of HOP_BY_HOP) {
    if (headers[name] !== undefined) delete headers[name]
  }
  return headers
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
