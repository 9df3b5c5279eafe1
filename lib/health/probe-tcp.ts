import net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Target } from '../upstream/target.js'
import { errorLabel, type Probe, type ProbeResult } from './probe.js'

export interface TcpProbeOptions {
  /** ms to establish the connection */
  timeout: number
}

const endpoints = new WeakMap<Target, { host: string, port: number }>()

/** host and port of a target's origin, parsed once per target. */
function endpointOf (target: Target): { host: string, port: number } {
  let ep = endpoints.get(target)
  if (ep === undefined) {
    const u = new URL(target.origin)
    const port = u.port !== '' ? Number(u.port) : (u.protocol === 'https:' ? 443 : 80)
    // URL keeps IPv6 literals bracketed; net.connect wants them bare.
    ep = { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port }
    endpoints.set(target, ep)
  }
  return ep
}

/** `type: tcp` probe: passes when a TCP connection opens within the timeout, then closes it. */
export function createTcpProbe (options: TcpProbeOptions): Probe {
  const timeout = options.timeout
  return function probeTcp (target: Target, outer?: AbortSignal): Promise<ProbeResult> {
    const start = performance.now()
    const { host, port } = endpointOf(target)
    return new Promise((resolve) => {
      let settled = false
      const socket = net.connect({ host, port })
      const finish = (ok: boolean, error?: string): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        outer?.removeEventListener('abort', onAbort)
        // RST instead of FIN (as HAProxy's tcp-check): 1,000 probes/s would otherwise leave
        // 60,000 sockets in TIME_WAIT and exhaust the ephemeral ports.
        if (ok) socket.resetAndDestroy()
        else socket.destroy()
        const durationMs = performance.now() - start
        resolve(ok ? { ok, durationMs } : { ok, durationMs, error })
      }
      const onAbort = (): void => finish(false, 'aborted')
      const timer = setTimeout(() => finish(false, `timeout after ${timeout}ms`), timeout)
      timer.unref()
      socket.unref()
      socket.once('connect', () => finish(true))
      socket.once('error', (err) => finish(false, errorLabel(err)))
      if (outer?.aborted === true) onAbort()
      else outer?.addEventListener('abort', onAbort, { once: true })
    })
  }
}
