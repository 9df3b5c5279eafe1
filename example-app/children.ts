// The example scripts' child processes: demo upstreams, and stopping every child on exit or a signal.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { GatewayConfig } from '../lib/config/index.js'

export const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))

const children: ChildProcess[] = []
// a parent that exits (a crash, process.exit) takes its children with it
process.once('exit', () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM') })

/** Spawn a child that stopAll() ends. */
export function spawnChild (command: string, args: string[], opts: SpawnOptions): ChildProcess {
  const child = spawn(command, args, opts)
  children.push(child)
  return child
}

/** SIGTERM every child still running, then wait for each to exit (SIGKILL after `graceMs`). */
export async function stopAll (graceMs = 10_000): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null)
  await Promise.all(running.map(async (c) => {
    const exited = once(c, 'exit')
    c.kill('SIGTERM')
    const timer = setTimeout(() => c.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }))
}

/** Start a demo upstream (example-app/demo-upstream.mjs) on `url`'s port; resolves when it listens. */
export async function startDemoUpstream (id: string, url: string): Promise<void> {
  const port = new URL(url).port
  const child = spawnChild(process.execPath, [here('./demo-upstream.mjs')], {
    env: { ...process.env, UPSTREAM_ID: id, UPSTREAM_PORT: port },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line'),
    once(child, 'exit').then(() => { throw new Error(`demo upstream ${id} could not listen on ${url} (port busy?)`) }),
  ])
  console.log(`demo upstream ${id} on ${url}`)
}

/** Every target of the config's upstreams, as a demo upstream. */
export async function startDemoUpstreams (config: GatewayConfig): Promise<void> {
  const targets = Object.values(config.upstreams).flatMap((u) => u.targets)
  await Promise.all(targets.map(async (t) => await startDemoUpstream(t.id, t.url)))
}
