// Booting a node must leave V8's hidden classes usable: objects built alike from `{}` share one map. See
// test/helpers/shape-probe.ts for why (ajv's name optimisation filled the root map's transitions, and every
// process.nextTick of every request went through V8's runtime).
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const PROBE = fileURLToPath(new URL('../helpers/shape-probe.ts', import.meta.url))

test('objects built alike from {} share one hidden class after a node boots', async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', PROBE], { timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
  const line = out.split('\n').find((l) => l.startsWith('PROBE '))
  t.ok(line, 'the probe reported')
  const { before, after } = JSON.parse(line!.slice('PROBE '.length)) as { before: number, after: number }
  t.equal(before, 0, 'before the boot: every pair on one map')
  t.equal(after, 0, 'after validating the config and starting the node: every pair on one map (none of 20 apart)')
})
