// A real Sentinel topology for failover tests: 1 master, 1 replica, 3 sentinels (quorum 2), free loopback ports.
// REDIS.md: ~2.2 s to be ready; `+switch-master` ~2.2 s after the master dies (down-after 1000 ms).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort, startRedis, type RedisProcess } from './redis.js'

export interface SentinelGroup {
  name: string
  master: RedisProcess
  replica: RedisProcess
  sentinels: Array<{ host: string, port: number }>
  /** `cluster.redis` for it. */
  config: { sentinels: Array<{ host: string, port: number }>, name: string }
  /** The port the sentinels name as master now. */
  masterPort (): Promise<number>
  stop (): Promise<void>
}

const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })

/** Start the group and resolve once every sentinel knows the replica and the other sentinels. */
export async function startSentinelGroup (name = 'fhgmaster', downAfter = 1000): Promise<SentinelGroup> {
  // diskless sync without delay (master settings): the replica is in sync in ms rather than after 5 s
  const master = await startRedis({ args: ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'] })
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
  const dirs: string[] = []
  const children: ChildProcess[] = []
  const ports: number[] = []
  const stop = async (): Promise<void> => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = once(c, 'exit')
        c.kill('SIGKILL')
        await exited
      }
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
    await master.kill('SIGCONT').catch(() => {})
    await replica.kill('SIGCONT').catch(() => {})
    await master.stop()
    await replica.stop()
  }
  try {
    for (let i = 0; i < 3; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'fhg-sentinel-'))
      dirs.push(dir)
      const port = await freePort()
      const conf = join(dir, 'sentinel.conf')
      writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} ${downAfter}`, `sentinel failover-timeout ${name} 5000`, `sentinel parallel-syncs ${name} 1`, ''].join('\n'))
      const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
      live.add(child)
      child.once('exit', () => live.delete(child))
      children.push(child)
      ports.push(port)
    }
    const until = Date.now() + 20_000
    // ready: the replica is in sync, and each sentinel lists it and the two other sentinels
    for (;;) {
      const info = await ask(replica.port, async (r) => await r.info('replication')).catch(() => '')
      if (/master_link_status:up/.test(info)) break
      if (Date.now() > until) throw new Error('the replica never synced with the master')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    for (const port of ports) {
      for (;;) {
        const ok = await ask(port, async (s) => {
          const replicas = await s.call('SENTINEL', 'REPLICAS', name) as unknown[]
          const others = await s.call('SENTINEL', 'SENTINELS', name) as unknown[]
          return replicas.length >= 1 && others.length >= 2
        }).catch(() => false)
        if (ok) break
        if (Date.now() > until) throw new Error(`sentinel ${port} never saw the replica and the other sentinels`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  } catch (err) {
    await stop()
    throw err
  }
  const sentinels = ports.map((port) => ({ host: '127.0.0.1', port }))
  return {
    name,
    master,
    replica,
    sentinels,
    config: { sentinels, name },
    async masterPort () {
      const addr = await ask(ports[0], async (s) => await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name) as [string, string])
      return Number(addr[1])
    },
    stop,
  }
}

async function ask<T> (port: number, fn: (s: Redis) => Promise<T>): Promise<T> {
  const s = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, commandTimeout: 1000, retryStrategy: () => null })
  s.on('error', () => {})
  try {
    await s.connect()
    return await fn(s)
  } finally {
    s.disconnect() // Sentinel refuses QUIT (REDIS.md)
  }
}
