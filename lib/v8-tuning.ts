import v8 from 'node:v8'

/**
 * V8 pretenures some per-request objects of the proxy path into the old generation, which then keeps
 * each request's graph alive until a full GC: measured ~8.7 KB/req promoted and 25-35 µs/req of GC,
 * against ~90 B/req with this flag (BENCHMARKS.md). Call it before fastify is imported. Embedders
 * can pass `--no-allocation-site-pretenuring` to node instead.
 */
export function tuneV8ForProxying (): void {
  v8.setFlagsFromString('--no-allocation-site-pretenuring')
}
