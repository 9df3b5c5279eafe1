// TLS listener req/s against the plain listener (ratio): one gateway node per listener kind in a child
// process, one demo upstream, keep-alive clients here (closed loop). Rounds alternate; medians reported.
// Run: node --import tsx bench/tls.ts   (BENCH_CONNS, BENCH_SECONDS, BENCH_ROUNDS)
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import os from 'node:os'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { median, ratio } from './lib/report.js'

const CONNS = Number(process.env.BENCH_CONNS ?? 32)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const role = process.argv[2]

if (role === 'gateway') {
  const { startNode } = await import('../plugins/gateway.js')
  const { validateConfig } = await import('../lib/config/index.js')
  const tls = process.argv[4] === undefined ? undefined : JSON.parse(process.argv[4]) as { cert: string, key: string }
  const node = await startNode(validateConfig({
    node: { id: 'bench', port: 0, tls },
    upstreams: { u: { targets: [{ id: 'u', url: process.argv[3] }] } },
    routes: [{ path: '/', upstream: 'u' }],
  }))
  console.log(JSON.stringify({ address: node.address }))
} else {
  const { startUpstream } = await import('../test/helpers/upstream.js')
  const { makeCa, issue } = await import('../test/helpers/pki.js')
  const pki = makeCa()
  const cert = issue(pki, 'bench', 'bench', true)
  const up = await startUpstream({ id: 'bench' })
  const children: ChildProcess[] = [up.child]
  process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
  const start = async (...args: string[]): Promise<string> => {
    const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'gateway', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(c)
    const [line] = await once(createInterface({ input: c.stdout! }), 'line') as [string]
    return (JSON.parse(line) as { address: string }).address
  }
  const plain = await start(up.url)
  const secure = await start(up.url, JSON.stringify(cert))
  const ca = readFileSync(pki.ca)

  async function run (address: string): Promise<number> {
    const tls = address.startsWith('https:')
    const agent = tls ? new https.Agent({ keepAlive: true, maxSockets: CONNS, ca }) : new http.Agent({ keepAlive: true, maxSockets: CONNS })
    const get = (): Promise<void> => new Promise((resolve, reject) => {
      (tls ? https : http).get(`${address}/bench`, { agent }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject)
    })
    let count = 0
    let stop = false
    const end = Date.now() + SECONDS * 1000
    const t0 = performance.now()
    await Promise.all(Array.from({ length: CONNS }, async () => {
      while (!stop) { await get(); count++; if (Date.now() >= end) stop = true }
    }))
    const rate = count / ((performance.now() - t0) / 1000)
    agent.destroy()
    return rate
  }
  await run(plain)
  await run(secure)
  const p: number[] = []
  const s: number[] = []
  for (let i = 0; i < ROUNDS; i++) { p.push(await run(plain)); s.push(await run(secure)) }
  console.log(`TLS vs plain listener, ${CONNS} keep-alive connections, ${SECONDS} s x ${ROUNDS} rounds, ${os.cpus().length} CPUs (shared)`)
  console.log(`plain: ${Math.round(median(p))} req/s  (rounds ${p.map(Math.round).join(', ')})`)
  console.log(`tls  : ${Math.round(median(s))} req/s  (rounds ${s.map(Math.round).join(', ')})`)
  console.log(`ratio: ${ratio(median(s), median(p))}`)
  for (const c of children) c.kill('SIGKILL')
  process.exit(0)
}
