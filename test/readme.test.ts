import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { optionsTableMarkdown } from '../lib/config/index.js'
import { errorsTableMarkdown } from '../lib/errors.js'
import { classify, docCommands, docFiles, type DocCommand } from './helpers/doc-commands.js'
import { ensureBuilt, root } from './helpers/dist.js'

t.setTimeout(900_000) // every documented command, servers included, on a busy machine

t.test('the README opens with the two commands', async (t) => {
  const head = readFileSync(new URL('../README.md', import.meta.url), 'utf8').split('\n').slice(0, 15).join('\n')
  t.match(head, /npm install && npm start/)
  t.match(head, /npm test/)
})

t.test('the options table of docs/configuration.md is the schema, row for row', async (t) => {
  const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8')
  const m = /<!-- options:start -->\n([\s\S]*?)\n<!-- options:end -->/.exec(doc)
  t.ok(m, 'docs/configuration.md has the options markers')
  t.equal(m?.[1], optionsTableMarkdown(), 'regenerate with: npx fastify-ha-gateway options')
})

t.test('the error table of docs/errors.md is the hub, row for row', async (t) => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const m = /<!-- errors:start -->\n([\s\S]*?)\n<!-- errors:end -->/.exec(doc)
  t.ok(m, 'docs/errors.md has the errors markers')
  t.equal(m?.[1], errorsTableMarkdown(), 'regenerate with: npx fastify-ha-gateway errors')
})

t.test('command blocks: how each documented command is taken', async (t) => {
  t.same(classify('npm install && npm start'), { command: 'npm start', kind: 'serve' })
  t.match(classify('npm test'), { kind: 'skip', reason: 'the suite itself' })
  t.match(classify('npm ci'), { kind: 'skip' })
  t.same(classify('npx fastify-ha-gateway start --config x.yaml'), { command: 'npx fastify-ha-gateway start --config x.yaml', kind: 'serve' })
  t.same(classify('npx fastify-ha-gateway validate --config x.yaml'), { command: 'npx fastify-ha-gateway validate --config x.yaml', kind: 'run' })
  t.same(classify('npm run example:cluster'), { command: 'npm run example:cluster', kind: 'serve' })
})

interface Exit { code: number | null, signal: NodeJS.Signals | null, out: string }

/** `bash -c command` in the checkout; its output and exit. */
async function run (command: string, timeoutMs = 120_000): Promise<Exit> {
  const child = spawn('bash', ['-c', command], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const [code, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
  return { code, signal, out }
}

const READY = [/listening (?:at|on) (https?:\/\/[^\s"]+)/, /node-1: (https?:\/\/\S+)/]

/** Start a serving command in its own process group; resolves with its URL once GET {url}/health answers. */
async function serve (command: string): Promise<{ url: string, stop: () => Promise<Exit>, running: () => boolean }> {
  const child = spawn('bash', ['-c', command], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const group = (signal: NodeJS.Signals | 0): boolean => { try { process.kill(-child.pid!, signal); return true } catch { return false } }
  const stop = async (): Promise<Exit> => {
    if (child.exitCode === null && child.signalCode === null) group('SIGINT') // as Ctrl-C in a terminal
    const timer = setTimeout(() => group('SIGKILL'), 60_000)
    const [code, signal] = await exited
    clearTimeout(timer)
    for (let i = 0; i < 100 && group(0); i++) await sleep(100) // the whole group, not only bash
    return { code, signal, out }
  }
  const end = Date.now() + 180_000
  for (;;) {
    const url = READY.map((re) => re.exec(out)?.[1]).find((u) => u !== undefined)?.replace('0.0.0.0', '127.0.0.1')
    if (url !== undefined) {
      try {
        await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })
        return { url, stop, running: () => group(0) }
      } catch {}
    }
    if (child.exitCode !== null || Date.now() > end) {
      const e = await stop()
      throw new Error(`${command}: never served (exit ${e.code}):\n${e.out.slice(-2000)}`)
    }
    await sleep(250)
  }
}

async function check (t: Test, c: DocCommand): Promise<void> {
  const where = `${c.file}:${c.line}: ${c.command}`
  if (c.kind === 'skip') { t.pass(`${where}: skipped (${c.reason ?? 'marked'})`); return }
  const around = c.with !== undefined ? await serve(c.with) : undefined
  try {
    if (c.kind === 'run') {
      const r = await run(c.command)
      t.equal(r.code, 0, `${where}: exit 0`, { output: r.out.slice(-2000) })
    } else {
      const s = await serve(c.command)
      const r = await s.stop()
      // npm itself answers a Ctrl-C with 130 (it gets the SIGINT too); the gateway under it drains and exits 0
      const ok = r.code === 0 || (r.code === 130 && /^npm /.test(c.command)) || r.signal === 'SIGINT'
      t.ok(ok, `${where}: served ${s.url}, then Ctrl-C: exit ${r.code ?? r.signal}`, { output: r.out.slice(-3000) })
      t.notOk(s.running(), `${where}: nothing of it is left running`)
    }
  } finally {
    if (around !== undefined) await around.stop()
  }
}

t.test('every command block of README.md and docs/*.md works as written', async (t) => {
  await ensureBuilt() // npx fastify-ha-gateway runs dist/ (npm install's prepare builds it)
  const commands = docFiles(root).flatMap((f) => docCommands(root, f))
  t.ok(commands.some((c) => c.kind !== 'skip'), 'the docs have commands to run')
  t.ok(commands.some((c) => /fastify-ha-gateway validate/.test(c.command)), 'the CLI commands are among them')
  for (const c of commands) await check(t, c)
})
