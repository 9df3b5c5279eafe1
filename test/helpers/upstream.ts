// The demo echo upstream (example-app/demo-upstream.mjs) as a child process, for the proxy tests: startUpstream,
// startUpstreams. The health tests have their own: helpers/health-upstream.ts (startHealthUpstream).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'

const SERVER = fileURLToPath(new URL('../../example-app/demo-upstream.mjs', import.meta.url))

export interface UpstreamOptions {
  id?: string
  /** Reuse a port (restart after a kill). */
  port?: number
  delay?: number
  status?: number
  healthStatus?: number
}

export interface UpstreamProcess {
  id: string
  port: number
  url: string
  child: ChildProcess
  kill (signal?: NodeJS.Signals): Promise<void>
  control (patch: Record<string, unknown>): Promise<void>
  stats (): Promise<{ requests: number, aborted: number, completed: number, healthChecks: number, byMethod: Record<string, number>, byPath: Record<string, number> }>
}

const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })

/** Start a real upstream HTTP server as a child process on a free loopback port. */
export async function startUpstream (opts: UpstreamOptions = {}): Promise<UpstreamProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  if (opts.id !== undefined) env.UPSTREAM_ID = opts.id
  if (opts.port !== undefined) env.UPSTREAM_PORT = String(opts.port)
  if (opts.delay !== undefined) env.UPSTREAM_DELAY = String(opts.delay)
  if (opts.status !== undefined) env.UPSTREAM_STATUS = String(opts.status)
  if (opts.healthStatus !== undefined) env.UPSTREAM_HEALTH_STATUS = String(opts.healthStatus)
  const child = spawn(process.execPath, [SERVER], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  live.add(child)
  child.once('exit', () => live.delete(child))
  const lines = createInterface({ input: child.stdout! })
  const [line] = await Promise.race([
    once(lines, 'line') as Promise<[string]>,
    once(child, 'exit').then(() => { throw new Error('upstream exited before listening') }),
  ])
  const { port, id } = JSON.parse(line) as { port: number, id: string }
  const url = `http://127.0.0.1:${port}`
  return {
    id,
    port,
    url,
    child,
    async kill (signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill(signal)
      await exited
    },
    async control (patch) {
      const res = await request(`${url}/__control`, { method: 'POST', body: JSON.stringify(patch) })
      await res.body.dump()
    },
    async stats () {
      const res = await request(`${url}/__stats`)
      return await res.body.json() as never
    },
  }
}

export async function startUpstreams (n: number, prefix = 'up', opts: UpstreamOptions = {}): Promise<UpstreamProcess[]> {
  return await Promise.all(Array.from({ length: n }, async (_, i) => await startUpstream({ ...opts, id: `${prefix}-${i + 1}` })))
}
