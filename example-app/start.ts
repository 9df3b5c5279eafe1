// `npm start`: start the demo upstreams named in gateway.yaml, then the gateway in front of them.
// No Redis needed: the node runs alone on in-memory state.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { loadConfigFile } from '../lib/config/index.js'
import { tuneV8ForProxying } from '../lib/v8-tuning.js'

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))
const configFile = process.env.GATEWAY_CONFIG ?? here('./gateway.yaml')
const config = loadConfigFile(configFile)

const children: ChildProcess[] = []
async function startDemoUpstream (id: string, url: string): Promise<void> {
  const port = new URL(url).port
  const child = spawn(process.execPath, [here('./demo-upstream.mjs')], {
    env: { ...process.env, UPSTREAM_ID: id, UPSTREAM_PORT: port },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(child)
  const [line] = await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line') as Promise<[string]>,
    once(child, 'exit').then(() => { throw new Error(`demo upstream ${id} could not listen on ${url} (port busy?)`) }),
  ])
  console.log(`demo upstream ${id} on ${url} ${line.length > 0 ? '' : ''}`)
}

function stopChildren (): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
}
process.once('exit', stopChildren)

const targets = Object.values(config.upstreams).flatMap((u) => u.targets)
await Promise.all(targets.map(async (t) => await startDemoUpstream(t.id, t.url)))

tuneV8ForProxying() // before fastify loads: see lib/v8-tuning.ts
const { startNode } = await import('../plugins/gateway.js')
const node = await startNode(config, { logger: { level: process.env.LOG_LEVEL ?? 'info' }, handleSignals: true })
console.log(`gateway ${config.node.id} listening on ${node.address} (config: ${configFile})`)
