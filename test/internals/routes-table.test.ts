// lib/routes: the route table (longest prefix by segment, methods filter), routeConfigOf over it,
// and the table built from a gateway config (entries kept across rebuilds when unchanged).
import t from 'tap'
import { RouteTable, RouteTableRef, normalizePrefix } from '../../lib/routes/route-table.js'
import { NO_ROUTE, kMatchedRoute, routeConfigOf, tableRouteConfig } from '../../lib/routes/route-config.js'
import { fileRouteTable } from '../../lib/routes/file-routes.js'
import { validateConfig } from '../../lib/config/index.js'

const cfg = (name: string): { name: string } => ({ name })
const nameOf = (c: object | undefined): string | undefined => (c as { name?: string } | undefined)?.name

t.test('a prefix matches itself and everything below it, not a sibling sharing its letters', async (t) => {
  const table = new RouteTable([{ path: '/api', config: cfg('api') }])
  for (const url of ['/api', '/api/', '/api/users', '/api/users/1/', '/api?x=1', '/api/users?q=/x', '/api//x']) {
    t.equal(nameOf(table.match('GET', url)), 'api', url)
  }
  for (const url of ['/apix', '/ap', '/', '/other/api', '/apix/y']) t.equal(table.match('GET', url), undefined, url)
})

t.test('the longest prefix wins, whatever the declaration order', async (t) => {
  const table = new RouteTable([
    { path: '/api', config: cfg('api') },
    { path: '/api/users/', config: cfg('users') },
    { path: '/', config: cfg('root') },
    { path: '/api/users/admin', config: cfg('admin') },
  ])
  t.equal(nameOf(table.match('GET', '/api/users')), 'users')
  t.equal(nameOf(table.match('GET', '/api/users/7')), 'users')
  t.equal(nameOf(table.match('GET', '/api/users/admin/x')), 'admin')
  t.equal(nameOf(table.match('GET', '/api/usersx')), 'api', 'a longer sibling falls back to the parent prefix')
  t.equal(nameOf(table.match('GET', '/api/orders')), 'api')
  t.equal(nameOf(table.match('GET', '/elsewhere/deep/path')), 'root', '/ catches the rest')
  t.equal(nameOf(table.match('GET', '/')), 'root')
  t.equal(table.size, 4)
})

t.test('methods filter; a prefix that leaves the method out yields to a shorter one', async (t) => {
  const table = new RouteTable([
    { path: '/api', config: cfg('api-all') },
    { path: '/api/users', methods: ['GET', 'HEAD'], config: cfg('users-read') },
    { path: '/api/users', methods: ['post'], config: cfg('users-write') },
    { path: '/only-get', methods: ['GET'], config: cfg('only-get') },
  ])
  t.equal(nameOf(table.match('GET', '/api/users/1')), 'users-read')
  t.equal(nameOf(table.match('POST', '/api/users')), 'users-write', 'methods are compared upper case')
  t.equal(nameOf(table.match('DELETE', '/api/users/1')), 'api-all', 'no route of /api/users takes DELETE: /api does')
  t.equal(table.match('POST', '/only-get'), undefined)
})

t.test('percent-escapes are decoded as the router does; bad escapes and non-paths do not match wrongly', async (t) => {
  const table = new RouteTable([{ path: '/api', config: cfg('api') }, { path: '/a/b', config: cfg('ab') }])
  t.equal(nameOf(table.match('GET', '/ap%69/x')), 'api')
  t.equal(nameOf(table.match('GET', '/a%2Fb')), undefined, 'an escaped slash stays inside its segment')
  t.equal(nameOf(table.match('GET', '/api/%E0%A4%A')), 'api', 'a malformed escape is matched raw')
  t.equal(table.match('GET', '*'), undefined)
  t.equal(table.match('GET', 'http://host/api'), undefined)
})

t.test('an empty table matches nothing; a bad path is refused at build', async (t) => {
  t.equal(RouteTable.EMPTY.match('GET', '/x'), undefined)
  t.throws(() => new RouteTable([{ path: 'api', config: {} }]), /must start with \//)
  t.equal(normalizePrefix('/api///'), '/api')
  t.equal(normalizePrefix('/'), '/')
})

t.test('routeConfigOf: own config for code routes; the table entry for the catch-all, matched once per request', async (t) => {
  const own = { upstream: 'x' }
  t.equal(routeConfigOf({ routeOptions: { config: own } }), own)
  // a decorated request keeps its route's config: Fastify's routeOptions getter is read once
  let reads = 0
  const decorated = { get routeOptions () { reads++; return { config: own } }, [kMatchedRoute]: null }
  t.equal(routeConfigOf(decorated), own)
  t.equal(routeConfigOf(decorated), own)
  t.equal(reads, 1, 'routeOptions read once per request')

  const a = cfg('a')
  const b = cfg('b')
  const ref = new RouteTableRef(new RouteTable([{ path: '/v', config: a }]))
  const catchAll = { ...tableRouteConfig(ref), url: '/*', method: 'GET' } // Fastify copies the config (symbols too)
  const req: Record<string | symbol, unknown> & { routeOptions: { config: object }, method: string, url: string } =
    { routeOptions: { config: catchAll }, method: 'GET', url: '/v/1', [kMatchedRoute]: null }
  t.equal(routeConfigOf(req), a)
  ref.swap(new RouteTable([{ path: '/v', config: b }]))
  t.equal(routeConfigOf(req), a, 'a request keeps the entry it matched across a swap')
  t.equal(ref.version, 1)
  const later = { ...req, [kMatchedRoute]: null }
  t.equal(routeConfigOf(later), b, 'the next request sees the new table')
  const none = { ...req, url: '/nope', [kMatchedRoute]: null }
  t.equal(routeConfigOf(none), NO_ROUTE)
  t.equal(routeConfigOf(none), NO_ROUTE)
})

t.test('fileRouteTable: entries from routes[]; unchanged routes keep their object across rebuilds', async (t) => {
  const input = {
    upstreams: {
      a: { strategy: 'least_connections', targets: [{ id: 'a1', url: 'http://127.0.0.1:1' }] },
      b: { targets: [{ id: 'b1', url: 'http://127.0.0.1:2' }] },
    },
    routes: [
      { path: '/a/', upstream: 'a' },
      { path: '/b', upstream: 'b', strategy: 'random', methods: ['GET'], rateLimit: { algorithm: 'fixed_window', limit: 3, window: '1s' } },
    ],
  }
  const c1 = validateConfig(input)
  const t1 = fileRouteTable(c1)
  const ea = t1.match('GET', '/a/x') as Record<string, unknown>
  const eb = t1.match('GET', '/b') as Record<string, unknown>
  t.equal(ea.upstream, 'a')
  t.equal(ea.gatewayRoute, '/a', 'the normalized path labels the route')
  t.equal(ea.strategy, undefined, 'an inherited strategy is left to the upstream')
  t.equal(eb.strategy, 'random')
  t.match(eb.rateLimit, [{ algorithm: 'fixed_window', limit: 3 }])
  t.equal(t1.match('POST', '/b'), undefined)

  const c2 = validateConfig({ ...input, routes: [input.routes[0], { ...input.routes[1], rateLimit: { algorithm: 'fixed_window', limit: 5, window: '1s' } }] })
  const t2 = fileRouteTable(c2, t1)
  t.equal(t2.match('GET', '/a'), ea, 'an unchanged route keeps its config object (and the plans keyed on it)')
  t.not(t2.match('GET', '/b'), eb, 'a changed route gets a new one')
  t.match((t2.match('GET', '/b') as Record<string, unknown>).rateLimit, [{ limit: 5 }])

  const c3 = validateConfig({ ...input, routes: [input.routes[1]] })
  t.equal(fileRouteTable(c3, t2).match('GET', '/a'), undefined, 'a removed route stops matching')
})
