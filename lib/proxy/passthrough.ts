// What reply-from does not carry from the upstream's response to the client: 103 Early Hints (informational
// heads before the answer) and trailers (fields after a chunked body). The try handler hands them over here.
import type { ServerResponse } from 'node:http'

/** The client's response, as much of it as passing these needs (a node:http ServerResponse or an HTTP/2 compat one). */
export type ClientResponse = Pick<ServerResponse, 'headersSent' | 'writableEnded' | 'destroyed' | 'addTrailers'> & {
  writeEarlyHints?: (hints: Record<string, string | string[]>) => void
}

/** undici's raw header list: name, value, name, value... (Buffers on HTTP/1.1; an object on HTTP/2). */
type RawHeaders = Buffer[] | string[] | Record<string, string | string[]> | null | undefined

/** The raw list as an object of lower-case names; repeated names become arrays. */
function fields (raw: RawHeaders): Record<string, string | string[]> | undefined {
  if (raw === null || raw === undefined) return undefined
  if (!Array.isArray(raw)) return Object.keys(raw).length > 0 ? raw : undefined
  if (raw.length < 2) return undefined
  const out: Record<string, string | string[]> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toString().toLowerCase()
    const value = raw[i + 1].toString()
    const prior = out[name]
    out[name] = prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [prior, value]
  }
  return out
}

/** A 103 from the upstream goes to the client at once (before the answer's head); other 1xx stay the proxy's. */
export function passEarlyHints (res: ClientResponse | undefined, statusCode: number, raw: RawHeaders): void {
  if (statusCode !== 103 || res === undefined || res.headersSent || res.destroyed || typeof res.writeEarlyHints !== 'function') return
  const hints = fields(raw)
  // Node writes an Early Hints head only with a Link field (that is what 103 is for)
  if (hints?.link === undefined) return
  try {
    res.writeEarlyHints(hints)
  } catch {
    // a field Node refuses: the hints are only hints
  }
}

/** The upstream's trailers go after the client's body (Node sends them on a chunked response; a sized one has none). */
export function passTrailers (res: ClientResponse | undefined, raw: RawHeaders): void {
  if (res === undefined || res.writableEnded || res.destroyed) return
  const trailers = fields(raw)
  if (trailers === undefined) return
  try {
    res.addTrailers(trailers)
  } catch {
    // an invalid trailer field: the body still ends
  }
}
