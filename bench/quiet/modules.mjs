// Prints, one a line, the node_modules folders the quiet-machine run needs: every production package of
// package-lock.json plus what the bench's own tools (autocannon, tsx, @fastify/http-proxy) need, nothing of the
// rest of the dev tooling (typescript, tap...). Offline: it reads the lock, the packages come from node_modules.
import { existsSync, readFileSync } from 'node:fs'

const BENCH_TOOLS = ['autocannon', 'tsx', '@fastify/http-proxy']
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'))
const pkgs = lock.packages

/** Node's resolution of `name` from the package at `from` (a lock path), as npm laid it out. */
function resolve (from, name) {
  let dir = from
  for (;;) {
    const p = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`
    if (pkgs[p] !== undefined) return p
    if (dir === '') return undefined
    const i = dir.lastIndexOf('/node_modules/')
    dir = i === -1 ? '' : dir.slice(0, i)
  }
}

const keep = new Set()
const todo = []
const add = (p) => { if (p !== undefined && !keep.has(p) && existsSync(p)) { keep.add(p); todo.push(p) } }
for (const [p, m] of Object.entries(pkgs)) if (p !== '' && m.dev !== true && m.devOptional !== true) add(p)
for (const t of BENCH_TOOLS) add(resolve('', t))
while (todo.length > 0) {
  const p = todo.pop()
  const m = pkgs[p]
  for (const dep of Object.keys({ ...m.dependencies, ...m.optionalDependencies, ...m.peerDependencies })) add(resolve(p, dep))
}
// a package nested in one kept is copied with it: print only the outermost
const list = [...keep].sort()
console.log(list.filter((p) => !list.some((q) => q !== p && p.startsWith(`${q}/`))).join('\n'))
