// Type tests of the public surface: compiled by `tsc --noEmit` (never run; tap only picks up test/**).
// Each `@ts-expect-error` line must fail to compile, or tsc reports the directive as unused.
import Fastify, { type FastifyReply } from 'fastify'
import loadBalancer from '../plugins/load-balancer.js'
import metrics from '../plugins/metrics.js'
import healthCheck from '../plugins/health-check.js'
import admin from '../plugins/admin.js'
import gateway, { startNode, type StartedNode } from '../plugins/gateway.js'
import { validateConfig, type GatewayConfig, type GatewayConfigInput } from '../lib/config/index.js'
import type { Target } from '../lib/upstream/target.js'
import type { LoadBalancer, LoadBalancerOptions, ProxyOptions, Strategy, UpstreamSpec } from './index.js'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T> (_value: T): void {}
function expectTrue<_T extends true> (): void {}

expectTrue<Equal<Strategy, 'round_robin' | 'weighted_round_robin' | 'least_connections' | 'response_time' | 'consistent_hash' | 'random'>>()

async function plugins (): Promise<void> {
  const app = Fastify()
  await app.register(metrics, { path: '/metrics', defaultMetrics: false })
  await app.register(loadBalancer, {
    upstreams: {
      users: { strategy: 'weighted_round_robin', targets: [{ id: 'u1', url: 'http://127.0.0.1:3001', weight: 3 }, { id: 'u2', url: 'http://127.0.0.1:3002' }] },
      sessions: { strategy: 'consistent_hash', hashOn: 'header:x-user-id', targets: [{ id: 's1', url: 'http://127.0.0.1:3011', metadata: { zone: 'a' } }] },
    },
    timeouts: { connect: 1000, headers: 5000 },
    agent: { keepAliveTimeout: 4000, connections: null },
  })
  await app.register(healthCheck, { drain: { delay: 100 } })
  await app.register(admin, { token: 'secret', prefix: '/ops' })

  // The decorators are typed.
  expectType<LoadBalancer>(app.loadBalancer)
  const added = app.loadBalancer.addTarget('users', { id: 'u3', url: 'http://127.0.0.1:3003', weight: 2 })
  expectTrue<Equal<typeof added, Target>>()
  expectType<number>(added.inFlight)
  expectType<Target>(app.loadBalancer.setWeight('users', 'u3', 5))
  expectType<Target>(app.loadBalancer.removeTarget('users', 'u3'))
  expectType<boolean>(app.loadBalancer.removeUpstream('sessions'))
  app.loadBalancer.addUpstream('orders', { targets: [{ id: 'o1', url: 'http://127.0.0.1:3021' }], timeouts: { headers: 2000 } })
  expectType<Strategy>(app.loadBalancer.status().users.strategy)
  expectType<string>(app.gatewayMetrics.registry.contentType)
  expectType<boolean>(app.gatewayHealth.readiness().ready)

  // @ts-expect-error a target needs a url
  app.loadBalancer.addTarget('users', { id: 'u4' })
  // @ts-expect-error weight is a number
  app.loadBalancer.addTarget('users', { id: 'u4', url: 'http://127.0.0.1:3004', weight: '2' })
  // @ts-expect-error setWeight takes a number
  app.loadBalancer.setWeight('users', 'u1', '5')
  // @ts-expect-error no such decorator method
  app.loadBalancer.addTargets('users', [])

  // Route config names the upstream and may override the strategy; reply.proxy() is typed.
  app.get('/users/*', { config: { upstream: 'users', strategy: 'least_connections' } }, (_request, reply) => {
    const r = reply.proxy()
    expectType<FastifyReply>(r)
    return r
  })
  app.route({ method: ['GET', 'POST'], url: '/s/*', config: { upstream: 'sessions', strategy: 'consistent_hash', hashOn: 'cookie:sid' }, handler: (_q, reply) => reply.proxy() })
  app.get('/any', (_request, reply) => reply.proxy({ upstream: 'users' }))
  app.get('/override', (_request, reply) => reply.proxy({ upstream: 'users', strategy: 'random' }))

  // @ts-expect-error unknown strategy in route config
  app.get('/bad', { config: { upstream: 'users', strategy: 'fastest' } }, (_request, reply) => reply.proxy())
  // @ts-expect-error upstream is a name, not a number
  app.get('/bad2', { config: { upstream: 1 } }, (_request, reply) => reply.proxy())
  // @ts-expect-error unknown strategy in reply.proxy()
  app.get('/bad3', (_request, reply) => reply.proxy({ upstream: 'users', strategy: 'least_conn' }))
  // @ts-expect-error proxy options are an object
  app.get('/bad4', (_request, reply) => reply.proxy('users'))
}

// Plugin options are checked at register().
async function badOptions (): Promise<void> {
  const app = Fastify()
  // @ts-expect-error unknown strategy in the load balancer options
  await app.register(loadBalancer, { upstreams: { u: { strategy: 'round-robin', targets: [] } } })
  // @ts-expect-error timeouts are numbers of ms in the plugin options
  await app.register(loadBalancer, { timeouts: { connect: true } })
  // @ts-expect-error targets are required
  await app.register(loadBalancer, { upstreams: { u: { strategy: 'random' } } })
  // @ts-expect-error metrics path is a string or false
  await app.register(metrics, { path: 9090 })
  // @ts-expect-error admin token is a string
  await app.register(admin, { token: 1234 })
}

const spec: UpstreamSpec = { strategy: 'response_time', targets: [{ id: 'a', url: 'http://127.0.0.1:1' }] }
const lbOpts: LoadBalancerOptions = { upstreams: { a: spec } }
const proxyOpts: ProxyOptions = { upstream: 'a', strategy: 'consistent_hash', hashOn: 'ip' }
// @ts-expect-error hashOn is a string
const badProxyOpts: ProxyOptions = { hashOn: 1 }
void lbOpts
void proxyOpts
void badProxyOpts

// The umbrella takes the same object as the YAML file (input shape: durations as strings or ms).
async function umbrella (): Promise<void> {
  const input: GatewayConfigInput = {
    node: { id: 'gw-1', port: 8080 },
    upstreams: {
      users: {
        strategy: 'weighted_round_robin',
        targets: [{ id: 'u1', url: 'http://127.0.0.1:3001', weight: 100 }],
        healthCheck: { active: { path: '/health', interval: '1s', timeout: 500 } },
      },
    },
    routes: [{ path: '/users', upstream: 'users', strategy: 'least_connections', methods: ['GET'] }],
    admin: { token: 'x' },
    drain: { delay: '200ms' },
  }
  const app = Fastify()
  await app.register(gateway, input)
  const config: GatewayConfig = validateConfig(input)
  expectType<number>(config.drain.delay)
  expectType<number>(config.node.port)
  expectType<string>(config.node.id)
  await app.register(gateway, { config })
  const node = await startNode(config, { logger: false, handleSignals: true })
  expectType<StartedNode>(node)
  expectType<Promise<void>>(node.close())
  expectType<string>(node.address)

  // @ts-expect-error unknown strategy in the config object
  const bad1: GatewayConfigInput = { upstreams: { u: { strategy: 'fastest', targets: [] } } }
  // @ts-expect-error a duration is a number or a string
  const bad2: GatewayConfigInput = { drain: { delay: true } }
  // @ts-expect-error methods are method tokens (strings; any token since issue 12)
  const bad3: GatewayConfigInput = { routes: [{ path: '/x', upstream: 'u', methods: [1] }] }
  // @ts-expect-error startNode takes a validated config (durations in ms), not the raw input
  await startNode({ drain: { delay: '1s' } })
  void bad1
  void bad2
  void bad3
}

void plugins
void badOptions
void umbrella
