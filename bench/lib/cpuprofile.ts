// Read V8 profiles (.cpuprofile: CPU samples; .heapprofile: allocation samples) into per-function and
// per-package totals, and print them per request, alone or side by side.
// Standalone: node --import tsx bench/lib/cpuprofile.ts <file.cpuprofile|file.heapprofile> [requests served]
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { table } from './report.js'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface CpuNode { id: number, callFrame: CallFrame, children?: number[] }
interface CpuProfile { nodes: CpuNode[], samples: number[], timeDeltas: number[] }
interface HeapNode { id: number, callFrame: CallFrame, selfSize: number, children: HeapNode[] }

/** Totals of one profile: µs of CPU (busy time only) or bytes allocated. */
export interface Breakdown {
  kind: 'cpu' | 'heap'
  total: number
  byFunction: Map<string, number>
  byGroup: Map<string, number>
  /** Inclusive totals of the project's own functions (plugins/, lib/). */
  inclusive: Map<string, number>
}

const IDLE = new Set(['(idle)', '(program)'])
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Where a frame's code lives: a project file, an npm package, node internals or V8. */
export function groupOf (f: CallFrame): string {
  const url = f.url
  if (url === '') return f.functionName.startsWith('(') ? f.functionName : '(native)'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const nm = path.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = path.slice(nm + 13).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (path.startsWith('node:')) return 'node:internal'
  if (path.startsWith(PROJECT_ROOT)) return path.slice(PROJECT_ROOT.length)
  return path
}

function keyOf (f: CallFrame): string {
  return `${f.functionName === '' ? '(anonymous)' : f.functionName} ${groupOf(f)}:${f.lineNumber + 1}`
}

function isProject (f: CallFrame): boolean {
  if (!f.url.startsWith('file://')) return false
  const path = fileURLToPath(f.url)
  return path.startsWith(PROJECT_ROOT) && !path.includes('node_modules/') && !path.includes('/bench/')
}

function add (m: Map<string, number>, k: string, v: number): void { m.set(k, (m.get(k) ?? 0) + v) }

/** Charge `amount` to the leaf frame and, inclusively, to every distinct project frame on its stack. */
function charge (b: Breakdown, stack: CallFrame[], amount: number): void {
  b.total += amount
  const leaf = stack[0]
  add(b.byFunction, keyOf(leaf), amount)
  add(b.byGroup, groupOf(leaf), amount)
  const seen = new Set<string>()
  for (const f of stack) {
    if (!isProject(f)) continue
    const k = keyOf(f)
    if (!seen.has(k)) { seen.add(k); add(b.inclusive, k, amount) }
  }
}

function empty (kind: Breakdown['kind']): Breakdown {
  return { kind, total: 0, byFunction: new Map(), byGroup: new Map(), inclusive: new Map() }
}

export function readProfile (file: string): Breakdown {
  const data = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile | { head: HeapNode }
  return 'head' in data ? fromHeap(data.head) : fromCpu(data)
}

function fromCpu (p: CpuProfile): Breakdown {
  const b = empty('cpu')
  const byId = new Map<number, CpuNode>()
  const parent = new Map<number, number>()
  for (const n of p.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const stacks = new Map<number, CallFrame[]>()
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i])
    if (n === undefined || IDLE.has(n.callFrame.functionName)) continue
    let stack = stacks.get(n.id)
    if (stack === undefined) {
      stack = []
      for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!.callFrame)
      stacks.set(n.id, stack)
    }
    charge(b, stack, p.timeDeltas[i] ?? 0)
  }
  return b
}

function fromHeap (head: HeapNode): Breakdown {
  const b = empty('heap')
  const walk = (n: HeapNode, up: CallFrame[]): void => {
    const stack = [n.callFrame, ...up]
    if (n.selfSize > 0) charge(b, stack, n.selfSize)
    for (const c of n.children) walk(c, stack)
  }
  walk(head, [])
  return b
}

function unit (b: Breakdown): { name: string, per: (v: number, req: number) => string } {
  return b.kind === 'cpu'
    ? { name: 'µs/req', per: (v, req) => (v / req).toFixed(1) }
    : { name: 'bytes/req', per: (v, req) => (v / req).toFixed(0) }
}

function ranked (m: Map<string, number>, n: number): Array<[string, number]> {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
}

/** One profile: top functions (self), packages (self), project functions (inclusive), per request. */
export function report (b: Breakdown, requests: number, top = 25): string {
  const u = unit(b)
  const req = Math.max(requests, 1)
  const pct = (v: number): string => `${(100 * v / b.total).toFixed(1)} %`
  const rows = (m: Map<string, number>, n: number): string[][] => ranked(m, n).map(([k, v]) => [k, u.per(v, req), pct(v)])
  const what = b.kind === 'cpu' ? 'CPU (busy samples)' : 'allocated (sampled, collected objects included)'
  return [
    `${what}: ${u.per(b.total, req)} ${u.name} over ${requests} requests`,
    '',
    table(['function (self)  where:line', u.name, 'share'], rows(b.byFunction, top)),
    '',
    table(['package or file (self)', u.name, 'share'], rows(b.byGroup, 15)),
    '',
    table(['project function (inclusive)  where:line', u.name, 'share'], rows(b.inclusive, 15)),
  ].join('\n')
}

/** Two profiles of the same kind side by side, per request, by package/file and by function. */
export function compare (a: { name: string, b: Breakdown, requests: number }, c: { name: string, b: Breakdown, requests: number }, top = 25): string {
  const u = unit(a.b)
  const out: string[] = [`${a.b.kind === 'cpu' ? 'CPU' : 'allocation'} per request, ${a.name} vs ${c.name} (${u.name}): ` +
    `${u.per(a.b.total, a.requests)} vs ${u.per(c.b.total, c.requests)}`]
  for (const [title, ma, mc] of [['package or file (self)', a.b.byGroup, c.b.byGroup], ['function (self)  where:line', a.b.byFunction, c.b.byFunction]] as const) {
    const keys = new Set([...ranked(ma, top).map(([k]) => k), ...ranked(mc, top).map(([k]) => k)])
    const diff = (k: string): number => (ma.get(k) ?? 0) / a.requests - (mc.get(k) ?? 0) / c.requests
    const rows = [...keys].sort((x, y) => diff(y) - diff(x)).slice(0, top)
      .map((k) => [k, u.per(ma.get(k) ?? 0, a.requests), u.per(mc.get(k) ?? 0, c.requests), (diff(k) >= 0 ? '+' : '') + diff(k).toFixed(1)])
    out.push('', table([title, a.name, c.name, 'difference'], rows))
  }
  return out.join('\n')
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2]
  if (file === undefined) {
    console.error('usage: node --import tsx bench/lib/cpuprofile.ts <file.cpuprofile|file.heapprofile> [requests]')
    process.exit(1)
  }
  console.log(report(readProfile(file), Number(process.argv[3] ?? 1)))
}
