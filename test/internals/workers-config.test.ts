// node.workers without Redis, without processes: the node's config document has one owner, the primary
// (HostCalls + ConfigHost), and each worker's SharedConfigRuntime runs on an IpcConfigStore over a fake channel.
import t from 'tap'
import { createClusterContext } from '../../lib/cluster/context.js'
import { SharedConfigRuntime, type SharedConfig, type SharedConfigLog } from '../../lib/cluster/shared-config.js'
import { validateConfig, type GatewayConfig } from '../../lib/config/index.js'
import type { GatewayError } from '../../lib/errors.js'
import { ConfigHost } from '../../lib/workers/config-host.js'
import { HostCalls, type HostAnswer } from '../../lib/workers/host-calls.js'
import { IpcConfigStore } from '../../lib/workers/ipc-config.js'
import type { Channel, PrimaryMessage, WorkerMessage } from '../../lib/workers/protocol.js'
import { WorkerLink } from '../../lib/workers/worker-link.js'

// the link's timers are unref()ed: this one holds the loop for the tests
const keep = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keep) })

const log: SharedConfigLog = { info () {}, warn () {}, error () {} }
const sharedOf = (id: string): SharedConfig => ({ upstreams: { api: { targets: [{ id, url: 'http://127.0.0.1:9' }] } }, routes: [{ path: '/api', upstream: 'api' }] })
const nodeConfig = (target = 'file-1'): GatewayConfig => validateConfig({ node: { id: 'gw', port: 0 }, ...sharedOf(target) })
const targetOf = (c: GatewayConfig): string => c.upstreams.api.targets[0].id

/** A primary as the supervisor runs it: answers each worker's calls a turn later, pushes accepted documents to the others. */
function fakePrimary (): { channel: () => Channel<WorkerMessage, PrimaryMessage>, calls: HostCalls, silent: boolean } {
  const calls = new HostCalls()
  const workers: Array<(m: PrimaryMessage) => void> = []
  const p = {
    calls,
    silent: false,
    channel (): Channel<WorkerMessage, PrimaryMessage> {
      const listeners = new Set<(m: PrimaryMessage) => void>()
      const deliver = (m: PrimaryMessage): void => { setImmediate(() => { for (const fn of listeners) fn(m) }) }
      workers.push(deliver)
      return {
        send (m) {
          if (m.t !== 'call' || p.silent) return
          const a = calls.handle(m.call, { slot: 1, evaluator: true }) as HostAnswer // config calls answer in their turn
          deliver({ fhg: 1, t: 'answer', id: m.id, ...(a.error === undefined ? { value: a.value } : { error: a.error }) })
          if (a.push !== undefined) for (const w of workers) if (w !== deliver) w({ fhg: 1, t: 'config', doc: a.push })
        },
        onMessage (fn) { listeners.add(fn); return () => { listeners.delete(fn) } },
      }
    },
  }
  return p
}

async function worker (primary: ReturnType<typeof fakePrimary>, slot: number, file = nodeConfig()): Promise<{ rt: SharedConfigRuntime, seen: string[], close: () => Promise<void> }> {
  const link = new WorkerLink(primary.channel(), slot)
  const ctx = createClusterContext({ name: 'wc' })
  const rt = await SharedConfigRuntime.open({ config: file, context: ctx, client: undefined, log, store: (onError) => new IpcConfigStore<SharedConfig>(link, { onError, timeout: 300 }) })
  const seen: string[] = []
  rt.watch((c, doc) => { seen.push(`${doc.version}:${targetOf(c)}`) })
  return { rt, seen, close: async () => { await rt.close(); link.close(); await ctx.close() } }
}

t.test('config host: compare-and-set as the memory store, the first seed wins', async (t) => {
  const h = new ConfigHost()
  t.same(h.put({ a: 1 }, 1), { ok: false, current: 0 }, 'nothing held: only expected 0 passes')
  const seeded = h.seed({ file: 1 }, 1)
  t.equal(seeded.seeded, true)
  t.equal(h.seed({ file: 2 }, 1).seeded, false, 'a second seed keeps the first')
  t.same(h.seed({ file: 2 }, 1).doc.config, { file: 1 })
  const ok = h.put({ v: 2 }, 1)
  t.ok(ok.ok && ok.doc.version === 2 && ok.doc.rev !== seeded.doc.rev)
  t.same(h.put({ v: 2 }, 1), { ok: false, current: 2 }, 'the same expected version again: stale')
  t.same(h.put({ v: 2 }, 2.5), { ok: false, current: 2 })
})

t.test('workers boot on the primary\'s document: the first seeds it, a later one takes the current version', async (t) => {
  const primary = fakePrimary()
  const a = await worker(primary, 1)
  t.teardown(a.close)
  t.equal(a.rt.version, 0, 'before boot: its file, never stored')
  await a.rt.boot()
  t.equal(a.rt.version, 1, 'seeded the primary with its file: version 1')
  t.same(a.seen, ['1:file-1'])
  t.same(await a.rt.put(sharedOf('put-2'), 1), { version: 2 })
  // a replacement worker boots from its file (the old targets) and takes version 2 at boot
  const b = await worker(primary, 2)
  t.teardown(b.close)
  await b.rt.boot()
  t.equal(b.rt.version, 2)
  t.same(b.seen, ['2:put-2'], 'applied the primary\'s document, not its file')
  t.same((await b.rt.get()).config, sharedOf('put-2'), 'get() answers the primary\'s document')
})

t.test('two PUTs with the same If-Match on two workers at once: one is accepted, the other is stale (409); both run the winner', async (t) => {
  const primary = fakePrimary()
  const a = await worker(primary, 1)
  const b = await worker(primary, 2)
  t.teardown(async () => { await a.close(); await b.close() })
  await a.rt.boot()
  await b.rt.boot()
  const [ra, rb] = await Promise.allSettled([a.rt.put(sharedOf('from-a'), 1), b.rt.put(sharedOf('from-b'), 1)])
  t.equal(ra.status, 'fulfilled', 'the first to reach the primary wins')
  t.same(ra.status === 'fulfilled' && ra.value, { version: 2 })
  t.equal(rb.status, 'rejected')
  const err = (rb as PromiseRejectedResult).reason as GatewayError & { currentVersion: number }
  t.equal(err.code, 'FHG_ERR_CONFIG_CONFLICT')
  t.equal(err.statusCode, 409)
  t.equal(err.currentVersion, 2, 'names the version that won')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(a.rt.version, 2)
  t.equal(b.rt.version, 2, 'the loser runs the winner\'s version (pushed by the primary)')
  t.same(b.rt.current().config, sharedOf('from-a'))
  t.same(b.seen, ['1:file-1', '2:from-a'], 'applied once, never its own refused document')
  t.same(await b.rt.put(sharedOf('from-b'), 2), { version: 3 }, 'retried on the version it now runs: accepted')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(a.rt.version, 3)
})

t.test('a primary that does not answer: boot serves the file, a PUT fails with 503 and nothing changes', async (t) => {
  const primary = fakePrimary()
  primary.silent = true
  const a = await worker(primary, 1)
  t.teardown(a.close)
  await a.rt.boot()
  t.equal(a.rt.version, 0, 'its own file, unversioned')
  t.same((await a.rt.get()).config, sharedOf('file-1'), 'get() falls back to what it runs')
  const err = await a.rt.put(sharedOf('x'), 0).catch((e: unknown) => e) as GatewayError
  t.equal(err.code, 'FHG_ERR_PRIMARY_UNAVAILABLE')
  t.equal(err.statusCode, 503)
  t.equal(a.rt.version, 0)
  t.same(a.seen, [])
})
