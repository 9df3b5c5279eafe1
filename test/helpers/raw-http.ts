// A raw TCP HTTP/1.1 client: sends the request bytes exactly as written (curl, undici and node:http
// normalise paths and headers), reads one response.
import net from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
  /** The response parsed as JSON, or undefined. */
  json: any
}

/** Parse one HTTP/1.1 response (Content-Length or chunked) from `text`; undefined while incomplete. */
export function parseResponse (text: string): RawResponse | undefined {
  const end = text.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
  }
  let rest = text.slice(end + 4)
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length'])
    if (Buffer.byteLength(rest) < n) return undefined
    rest = rest.slice(0, n)
  } else if (headers['transfer-encoding'] === 'chunked') {
    if (!rest.includes('\r\n0\r\n\r\n') && !rest.startsWith('0\r\n\r\n')) return undefined
    let body = ''
    let at = 0
    for (;;) {
      const nl = rest.indexOf('\r\n', at)
      const size = parseInt(rest.slice(at, nl), 16)
      if (size === 0) break
      body += rest.slice(nl + 2, nl + 2 + size)
      at = nl + 2 + size + 2
    }
    rest = body
  }
  let json: unknown
  try { json = JSON.parse(rest) } catch { json = undefined }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest, json }
}

/** Send `head` (request line and headers, CRLF-joined, no final blank line) plus `body`; resolve the response. */
export async function rawRequest (port: number, head: string, body = '', timeoutMs = 10_000): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no response to ${head.split('\r\n')[0]}`)) }, timeoutMs)
    const done = (r: RawResponse): void => { clearTimeout(timer); socket.destroy(); resolve(r) }
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => {
      text += c
      const r = parseResponse(text)
      if (r !== undefined) done(r)
    })
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('close', () => {
      clearTimeout(timer)
      const r = parseResponse(text)
      if (r !== undefined) resolve(r)
      else reject(new Error(`connection closed without a response to ${head.split('\r\n')[0]}`))
    })
    socket.write(`${head}\r\nconnection: close\r\n\r\n${body}`, 'latin1')
  })
}
