// TLS with a private CA made by openssl: the HTTPS / HTTP/2 listener (20 MB upload byte-identical, SIGHUP
// reload keeping open connections), and HTTPS upstreams with mTLS client certificates and probes.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, readFileSync } from 'node:fs'
import { once } from 'node:events'
import https from 'node:https'
import http2 from 'node:http2'
import tls from 'node:tls'
import { startNode } from '../plugins/gateway.js'
import { validateConfig } from '../lib/config/index.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { issue, makeCa, type Pki } from './helpers/pki.js'

let pki: Pki
let up: UpstreamProcess
t.before(async () => {
  pki = makeCa()
  up = await startUpstream({ id: 'plain' })
})
t.teardown(async () => { await up.kill() })

async function httpsRequest (url: string, opts: https.RequestOptions, body?: Buffer): Promise<{ status: number, json: any, socket: tls.TLSSocket }> {
  return await new Promise((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      const socket = res.socket as tls.TLSSocket
      let text = ''
      res.on('data', (c) => { text += String(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text), socket }) })
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('HTTPS listener: a 20 MB upload arrives byte-identical; X-Forwarded-Proto is https; SIGHUP reloads the certificate and keeps open connections', async (t) => {
  const server = issue(pki, 'listener', 'gw-one', true)
  const node = await startNode(validateConfig({
    node: { id: 'gw-tls', port: 0, tls: { cert: server.cert, key: server.key } },
    upstreams: { plain: { targets: [{ id: 'p', url: up.url }] } },
    routes: [{ path: '/', upstream: 'plain' }],
  }))
  t.teardown(() => node.close())
  t.match(node.address, /^https:/)
  const body = randomBytes(20 * 1024 * 1024)
  const agent = new https.Agent({ ca: readFileSync(pki.ca), keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const res = await httpsRequest(`${node.address}/upload`, { method: 'POST', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, body)
  t.equal(res.status, 200)
  t.equal(res.json.bodyBytes, body.length)
  t.equal(res.json.bodySha256, createHash('sha256').update(body).digest('hex'), 'byte-identical')
  t.equal(res.json.headers['x-forwarded-proto'], 'https')
  const before = res.socket.getPeerCertificate().subject.CN
  t.equal(before, 'gw-one')

  // a new certificate in the same files, then SIGHUP
  const next = issue(pki, 'listener2', 'gw-two', true)
  copyFileSync(next.cert, server.cert)
  copyFileSync(next.key, server.key)
  process.emit('SIGHUP', 'SIGHUP')
  const kept = await httpsRequest(`${node.address}/again`, { agent })
  t.equal(kept.status, 200, 'the open keep-alive connection still serves')
  t.equal(kept.socket, res.socket, 'on the same socket')
  const fresh = await httpsRequest(`${node.address}/new`, { ca: readFileSync(pki.ca), agent: false })
  t.equal(fresh.socket.getPeerCertificate().subject.CN, 'gw-two', 'a new connection gets the reloaded certificate')
})

t.test('node.http2: HTTP/2 with TLS, HTTP/1.1 by ALPN; forwarded headers right on both', async (t) => {
  const server = issue(pki, 'h2', 'gw-h2', true)
  const node = await startNode(validateConfig({
    node: { id: 'gw-h2', port: 0, tls: { cert: server.cert, key: server.key }, http2: true },
    upstreams: { plain: { targets: [{ id: 'p', url: up.url }] } },
    routes: [{ path: '/', upstream: 'plain' }],
  }))
  t.teardown(() => node.close())
  const session = http2.connect(node.address, { ca: readFileSync(pki.ca) })
  t.teardown(() => session.close())
  const stream = session.request({ ':path': '/h2?x=1', ':method': 'GET' })
  const [headers] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
  let text = ''
  for await (const c of stream) text += String(c)
  t.equal(headers[':status'], 200)
  const json = JSON.parse(text)
  t.equal(json.url, '/h2?x=1')
  t.equal(json.headers['x-forwarded-proto'], 'https')
  t.match(json.headers['x-forwarded-host'], /^127\.0\.0\.1:\d+$/, 'X-Forwarded-Host from :authority')
  const h1 = await httpsRequest(`${node.address}/h1`, { ca: readFileSync(pki.ca), agent: false })
  t.equal(h1.status, 200, 'an HTTP/1.1 client still gets through')
  t.equal(h1.json.headers['x-forwarded-proto'], 'https')
})

t.test('HTTPS upstream with a private CA and an mTLS client certificate; probes use the same settings', async (t) => {
  const srv = issue(pki, 'upstream', 'upstream', true)
  const client = issue(pki, 'client', 'gw-client', false)
  const upstream = https.createServer({ cert: readFileSync(srv.cert), key: readFileSync(srv.key), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const cn = (req.socket as tls.TLSSocket).getPeerCertificate().subject?.CN
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ url: req.url, clientCn: cn, proto: req.headers['x-forwarded-proto'] }))
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const url = `https://127.0.0.1:${(upstream.address() as { port: number }).port}`
  const node = await startNode(validateConfig({
    node: { id: 'gw-mtls', port: 0 },
    upstreams: {
      secure: {
        targets: [{ id: 's', url }],
        tls: { ca: pki.ca, cert: client.cert, key: client.key },
        healthCheck: { active: { type: 'http', path: '/health', interval: '200ms', healthyThreshold: 1 } },
      },
      // another origin (pools are per origin: one origin, one TLS setting)
      nocert: { targets: [{ id: 'n', url: url.replace('127.0.0.1', 'localhost') }], tls: { ca: pki.ca }, failover: { maxRetries: 0 } },
    },
    routes: [{ path: '/secure', upstream: 'secure' }, { path: '/nocert', upstream: 'nocert' }],
  }))
  t.teardown(() => node.close())
  const res = await fetch(`${node.address}/secure/x`)
  t.equal(res.status, 200)
  const json = await res.json() as { url: string, clientCn: string }
  t.equal(json.clientCn, 'gw-client', 'the upstream saw the gateway\'s client certificate')
  t.equal(json.url, '/secure/x')
  t.equal((await fetch(`${node.address}/nocert/x`)).status, 502, 'without a client certificate the upstream refuses: 502')
  let status = ''
  for (let i = 0; i < 100 && status !== 'healthy'; i++) {
    status = node.app.loadBalancer.status().secure.targets[0].status as string
    if (status !== 'healthy') await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(status, 'healthy', 'the active HTTP probe passed over mTLS')
})
