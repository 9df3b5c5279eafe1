// CPU profile of a running process that was not started for it (the CLI node as users start it): SIGUSR1 opens
// its inspector (Node's documented way, on 127.0.0.1:<port>, 9229 by default), then the Profiler domain over the
// inspector's WebSocket. The profile covers only the span between start() and stop(): no start-up, no warm-up.
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'

export interface AttachedProfiler {
  start (): Promise<void>
  /** Stops the profiler and returns the .cpuprofile JSON. */
  stop (): Promise<unknown>
  close (): void
}

/** Opens `pid`'s inspector with SIGUSR1 and connects to it; `port` is where that process's inspector listens. */
export async function attachProfiler (pid: number, port = 9229): Promise<AttachedProfiler> {
  process.kill(pid, 'SIGUSR1')
  let target: string | undefined
  for (let i = 0; i < 100 && target === undefined; i++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>
      target = list[0]?.webSocketDebuggerUrl
    } catch { await sleep(100) }
  }
  if (target === undefined) throw new Error(`no inspector on 127.0.0.1:${port} for pid ${pid}`)
  const ws = new WebSocket(target)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  let seq = 0
  const waiting = new Map<number, (m: { result?: unknown, error?: { message: string } }) => void>()
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as { id?: number, result?: unknown, error?: { message: string } }
    if (m.id !== undefined) { waiting.get(m.id)?.(m); waiting.delete(m.id) }
  })
  const post = async (method: string, params: unknown = {}): Promise<any> => await new Promise((resolve, reject) => {
    const id = ++seq
    waiting.set(id, (m) => { if (m.error !== undefined) reject(new Error(`${method}: ${m.error.message}`)); else resolve(m.result) })
    ws.send(JSON.stringify({ id, method, params }))
  })
  await post('Profiler.enable')
  await post('Profiler.setSamplingInterval', { interval: 100 })
  return {
    async start () { await post('Profiler.start') },
    async stop () { return ((await post('Profiler.stop')) as { profile: unknown }).profile },
    close () { ws.close() },
  }
}
