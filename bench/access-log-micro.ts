// The access log's own work per request, apart from the server: building the line (lib/log/access-line.ts) and
// buffering it into the destination (lib/log/destination.ts, written to /dev/null), CPU µs per line. Steadier
// than a server A/B on a busy machine; bench/access-log-ab.ts measures it inside a serving node.
//   node --import tsx bench/access-log-micro.ts
import { accessLine, type AccessRequest } from '../lib/log/access-line.js'
import { openLogDestination } from '../lib/log/destination.js'
import { kProxy } from '../lib/proxy/engine.js'

const N = Number(process.env.BENCH_LINES ?? 200_000)
const d = openLogDestination('/dev/null')
const socket = { bytesRead: 0, bytesWritten: 0 }
// a proxied request, as the CLI node's lines mostly are: the route plan and the try that answered
const proxied = { plan: { label: '/api' }, upstreamName: 'api', targetId: 'api-1', tryCount: 1 }
const req = { id: 'req-123', method: 'GET', url: '/api/users/42?x=1', ip: '127.0.0.1', headers: {}, raw: { socket }, routeOptions: { url: '/*' }, [kProxy]: proxied } as unknown as AccessRequest
const reply = { statusCode: 200, elapsedTime: 1.2345 }
const yieldLoop = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 1))

/** mode 0: the loop alone; 1: + the line; 2: + the write. The loop yields every 200 lines so writes complete. */
async function run (mode: number): Promise<number> {
  const c0 = process.cpuUsage()
  for (let i = 0; i < N; i++) {
    socket.bytesRead += 90
    socket.bytesWritten += 240
    if (mode > 0) {
      const line = accessLine(req, reply, Date.now())
      if (mode > 1) d.write(line)
    }
    if (i % 200 === 0) await yieldLoop()
  }
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / N
}

for (let k = 0; k < 3; k++) {
  const a = await run(0)
  const b = await run(1)
  const c = await run(2)
  console.log(`CPU µs per line: line ${(b - a).toFixed(3)}, write ${(c - b).toFixed(3)}, both ${(c - a).toFixed(3)} (loop alone ${a.toFixed(3)})`)
}
d.close()
