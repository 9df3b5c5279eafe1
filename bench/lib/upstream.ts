// The benchmark upstream: a plain node:http server answering a 20-byte JSON body, kept alive.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export const BODY = '{"message":"hello!"}' // 20 bytes
const HEADERS = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(BODY)) }

export async function startUpstream (): Promise<{ port: number, info: string, served: () => number, sockets: () => number }> {
  let served = 0
  let sockets = 0
  const server = http.createServer((_req, res) => {
    served++
    res.writeHead(200, HEADERS)
    res.end(BODY)
  })
  // Longer than any proxy's idle keep-alive (undici 4 s), so the proxy always closes first: no reset races.
  server.on('connection', (socket) => {
    sockets++
    socket.once('close', () => { sockets-- })
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.maxRequestsPerSocket = 0
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, info: 'node:http', served: () => served, sockets: () => sockets }
}
