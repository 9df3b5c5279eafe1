// Where the CLI node's CPU goes per request, against bare @fastify/reply-from (issue 13): both serve the same load
// over the same two upstreams; each is profiled over its measured run only (the CLI node through its inspector,
// opened with SIGUSR1; reply-from through its bench child), then the per-request difference by package/file and by
// function is printed.
//   node --import tsx bench/profile-cli.ts [--duration=10] [--connections=64] [--config=<extra JSON merged into the node config>]
// The CLI node runs with its default config (access log on, stdout = /dev/null) unless --config says otherwise,
// e.g. --config='{"log":{"requests":"off"}}'.
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { attachProfiler } from './lib/attach.js'
import { compare, readProfile } from './lib/cpuprofile.js'
import { load } from './lib/load.js'
import { CAN_PIN, killAll, pin, startChild } from './lib/servers.js'
import { freePort, gatewayConfig } from './lib/setups.js'

const flag = (name: string, dflt: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt
const DURATION = Number(flag('duration', '10'))
const CONNECTIONS = Number(flag('connections', '64'))
const EXTRA = JSON.parse(flag('config', '{}')) as Record<string, unknown>
const ROOT = fileURLToPath(new URL('..', import.meta.url))

async function main (): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'fhg-prof-'))
  const ups = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const upstreams = ups.map((u) => u.url)
  const base = await startChild('reply-from', 'reply-from', { upstreams })

  const port = await freePort()
  const file = join(dir, 'cli.yaml')
  writeFileSync(file, JSON.stringify({ ...gatewayConfig(upstreams, port), node: { id: 'prof', host: '127.0.0.1', port }, ...EXTRA }, null, 2))
  const cli = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/fastify-ha-gateway.ts'), 'start', '--config', file],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_ENV: 'production' } })
  process.on('exit', () => cli.kill('SIGKILL'))
  const cliUrl = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${cliUrl}/health`)).ok) break } catch {}
    if (i > 600 || cli.exitCode !== null) throw new Error('the CLI node did not start')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const prof = await attachProfiler(cli.pid!)
  if (CAN_PIN && os.cpus().length >= 6) {
    // a quiet many-core machine: upstreams on 0 and 1, each proxy on its own core, the load generator on the rest
    ups.forEach((u, i) => { pin(u.pid, String(i)) })
    pin(base.pid, '2')
    pin(cli.pid!, '3')
    pin(process.pid, `4-${os.cpus().length - 1}`)
  }

  const run = async (url: string): Promise<number> => (await load({ url, connections: CONNECTIONS, duration: DURATION })).requests.total
  for (const url of [base.url, cliUrl]) await load({ url, connections: CONNECTIONS, duration: 3 }) // JIT warm-up

  await base.profileStart()
  const nBase = await run(base.url)
  const [baseCpu] = await base.profileStop(join(dir, 'reply-from'))

  await prof.start()
  const nCli = await run(cliUrl)
  const cliFile = join(dir, 'cli.cpuprofile')
  writeFileSync(cliFile, JSON.stringify(await prof.stop()))
  prof.close()

  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${nCli} requests through the CLI node, ${nBase} through reply-from; profiles in ${dir}`)
  console.log(compare({ name: 'CLI node', b: readProfile(cliFile), requests: nCli }, { name: 'reply-from', b: readProfile(baseCpu), requests: nBase }, 30))
  cli.kill('SIGTERM')
  killAll()
}

main().catch((err) => { console.error(err); process.exitCode = 1; killAll() })
