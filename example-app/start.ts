// `npm start`: start the demo upstreams named in gateway.yaml, then the gateway in front of them.
// No Redis needed: the node runs alone on in-memory state.
import { loadConfigFile } from '../lib/config/index.js'
import { tuneV8ForProxying } from '../lib/v8-tuning.js'
import { here, startDemoUpstreams } from './children.js'

const configFile = process.env.GATEWAY_CONFIG ?? here('./gateway.yaml')
const config = loadConfigFile(configFile)

await startDemoUpstreams(config)

tuneV8ForProxying() // before fastify loads: see lib/v8-tuning.ts
const { startNode } = await import('../plugins/gateway.js')
const node = await startNode(config, { logger: { level: process.env.LOG_LEVEL ?? 'info' }, handleSignals: true })
console.log(`gateway ${config.node.id} listening on ${node.address} (config: ${configFile})`)
