// How the workers of a `node.workers` node share their port. Where the runtime has SO_REUSEPORT for TCP servers
// (Node 22.12+ / 23.1+, `reusePort` on listen, on Linux and FreeBSD) each worker binds the port itself and the
// kernel spreads new connections over the workers: the primary accepts nothing and passes no handle over IPC.
// Elsewhere (Node 20), and for `port: 0` (each worker would get a port of its own), node:cluster's primary
// accepts and hands connections round robin, as before.

/** The listen options of one worker: `reusePort` + `exclusive` where it applies, else none. */
export function workerListenOptions (port: number, version = process.versions.node, platform: string = process.platform): { reusePort: true, exclusive: true } | undefined {
  return port !== 0 && reusePortSupported(version, platform) ? { reusePort: true, exclusive: true } : undefined
}

/** Does this runtime offer `reusePort` on net.Server#listen? (added in Node 23.1.0 and 22.12.0) */
export function reusePortSupported (version = process.versions.node, platform: string = process.platform): boolean {
  if (platform !== 'linux' && platform !== 'freebsd') return false
  const [major, minor] = version.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
}
