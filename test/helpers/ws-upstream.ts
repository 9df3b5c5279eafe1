// WebSocket echo upstreams (the `ws` package) on free loopback ports, for the upgrade tests and bench.
import http from 'node:http'
import { once } from 'node:events'
import { WebSocketServer } from 'ws'

export interface WsUpstream {
  id: string
  url: string
  port: number
  /** Handshake request headers, one per accepted upgrade. */
  handshakes: http.IncomingHttpHeaders[]
  /** Paths of the accepted upgrades. */
  paths: string[]
  wss: WebSocketServer
  close (): Promise<void>
}

/** Echo server: the first message to each client is `hello <id>`, then every message (text or binary) comes back as sent. */
export async function startWsUpstream (id: string, opts: { port?: number } = {}): Promise<WsUpstream> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ id, url: req.url, method: req.method, headers: req.headers }))
  })
  const wss = new WebSocketServer({ server })
  const handshakes: http.IncomingHttpHeaders[] = []
  const paths: string[] = []
  wss.on('connection', (ws, req) => {
    handshakes.push(req.headers)
    paths.push(req.url ?? '')
    ws.send(`hello ${id}`)
    ws.on('message', (data, isBinary) => { ws.send(data, { binary: isBinary }) })
  })
  server.listen(opts.port ?? 0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  return {
    id,
    url: `http://127.0.0.1:${port}`,
    port,
    handshakes,
    paths,
    wss,
    async close () {
      for (const c of wss.clients) c.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
