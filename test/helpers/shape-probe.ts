// Run by test/internals/v8-shapes.test.ts in a process of its own, with --allow-natives-syntax: boots a node as the
// CLI does (the example gateway's file, validated, access log on), then asks V8 whether two objects built the same
// way from `{}` still share one hidden class. V8 caps the transitions of a map at 1,536; code that adds hundreds of
// distinct first keys to fresh `{}` objects (ajv's code generator optimising its names did, compiling the config
// schema) fills the cap of the root map every `{}` starts from, and from then on such objects get a map of their
// own each: every inline cache that meets them goes megamorphic, and Node's process.nextTick (an object literal with
// two computed keys) ran V8's runtime twice per call, ~45 times a request (bench/instructions.ts).
import { fileURLToPath } from 'node:url'
import { loadConfigFile } from '../../lib/config/index.js'
import { startNode } from '../../plugins/gateway.js'

// V8's natives syntax is parsed at run time only (the process runs with --allow-natives-syntax)
const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean
const apart = (): number => {
  let n = 0
  for (let i = 0; i < 20; i++) {
    const key = `probe${i}_${Math.random()}`
    const a: Record<string, number> = {}
    a[key] = 1
    const b: Record<string, number> = {}
    b[key] = 2
    if (!sameMap(a, b)) n++
  }
  return n
}

const before = apart()
const config = loadConfigFile(fileURLToPath(new URL('../../example-app/gateway.yaml', import.meta.url)), { ...process.env, GATEWAY_PORT: '0' })
const node = await startNode(config, { logger: false })
const after = apart()
await node.close()
process.stdout.write(`PROBE ${JSON.stringify({ before, after })}\n`)
