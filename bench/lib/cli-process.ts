// The gateway CLI as a benchmark's child process, and the BENCH_* settings every bench reads.
import type { ChildProcess } from 'node:child_process'

/** process.env with `--key=value` flags as BENCH_KEY=value (e.g. --rounds=3 -> BENCH_ROUNDS=3). */
export function benchEnv (argv = process.argv.slice(2)): Record<string, string | undefined> {
  const flags = Object.fromEntries(argv.filter((a) => a.startsWith('--') && a.includes('='))
    .map((a) => { const [k, v] = a.slice(2).split('=', 2); return [`BENCH_${k.toUpperCase().replace(/-/g, '_')}`, v] }))
  return { ...process.env, ...flags }
}

export interface CliServer { pid: number, url: string, stop (): Promise<void> }

/** Wait until the started CLI answers `/health` with 200 (or exits, or `seconds` pass); `stop` sends `signal`. */
export async function cliServer (key: string, proc: ChildProcess, url: string, seconds: number, signal: NodeJS.Signals): Promise<CliServer> {
  const t0 = Date.now()
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${key}: the CLI exited ${proc.exitCode}`)
    try { if ((await fetch(`${url}/health`)).status === 200) break } catch {}
    if (Date.now() - t0 > seconds * 1000) throw new Error(`${key}: not listening after ${seconds} s`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    pid: proc.pid!,
    url,
    async stop () {
      if (proc.exitCode !== null) return
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill(signal)
      await exited
    },
  }
}

/** The setups every proxy comparison runs, as the reports name them. */
export const COMMON_SETUPS = {
  'reply-from': 'bare Fastify + @fastify/reply-from (round robin in getUpstream)',
  'http-proxy': '@fastify/http-proxy (one upstream)',
  cli: 'gateway via the CLI, default config (access log to stdout = /dev/null)',
  'cli-off': 'gateway via the CLI, log.requests: off',
  startnode: 'gateway via startNode, logger off',
} as const

/** BENCH_SETUPS (a comma list, else `fallback`) checked against `about`; bare reply-from always first among them. */
export function pickSetups<K extends string> (about: Record<K, string>, list: string | undefined, fallback: string): K[] {
  const keys = (list ?? fallback).split(',').map((k) => k.trim()) as K[]
  for (const k of keys) if (!(k in about)) throw new Error(`unknown setup ${k}: one of ${Object.keys(about).join(', ')}`)
  if (!keys.includes('reply-from' as K)) keys.unshift('reply-from' as K) // the base of every ratio
  return keys
}
