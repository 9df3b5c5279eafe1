// The shell command blocks (```sh / ```bash) of README.md and docs/*.md, as test/readme.test.ts runs them.
//
// How a command is run:
//  - `npm install` / `npm ci` parts are taken as done (the suite runs after them) and `npm test` is this suite;
//  - a command that serves (`npm start`, `npm run example:cluster`, `... start --config ...`) is started, must print
//    an http:// URL that answers, and is then stopped with SIGINT (as Ctrl-C) and must exit;
//  - anything else runs in the checkout with bash and must exit 0 within two minutes.
// Markers on the line before a block: `<!-- doc-test: skip <reason> -->` skips it;
// `<!-- doc-test: with <command> -->` runs the block while <command> serves (e.g. curl against `npm start`).
// A line ending in `# doc-test: skip <reason>` skips that command only.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export interface DocCommand {
  file: string
  line: number
  command: string
  kind: 'run' | 'serve' | 'skip'
  reason?: string
  /** A command serving while this one runs (`doc-test: with`). */
  with?: string
}

const SERVES = /(^|\s)(npm start|npm run example:cluster|fastify-ha-gateway(\.ts)? start)(\s|$)/
const DONE = /^npm (install|ci)(\s|$)/
const SELF = /^npm (test|run test(:coverage)?)(\s|$)/

/** The doc files with command blocks: README.md and docs/*.md. */
export function docFiles (root: string): string[] {
  let docs: string[] = []
  try { docs = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => join('docs', f)) } catch {}
  return ['README.md', ...docs]
}

/** `cmd  # comment` -> `cmd` (a # inside quotes stays). */
function stripComment (line: string): { code: string, comment: string } {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote !== undefined) { if (c === quote) quote = undefined; continue }
    if (c === '"' || c === "'") quote = c
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return { code: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() }
  }
  return { code: line.trimEnd(), comment: '' }
}

export function classify (command: string): Pick<DocCommand, 'kind' | 'reason' | 'command'> {
  const parts = command.split(/\s+&&\s+/).filter((p) => !DONE.test(p))
  if (parts.length === 0) return { command, kind: 'skip', reason: 'install: CI runs npm ci before the suite' }
  const rest = parts.join(' && ')
  if (SELF.test(rest)) return { command: rest, kind: 'skip', reason: 'the suite itself' }
  return { command: rest, kind: SERVES.test(rest) ? 'serve' : 'run' }
}

/** Every command of every ```sh / ```bash block in `file` (relative to `root`). */
export function docCommands (root: string, file: string): DocCommand[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n')
  const out: DocCommand[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell)\s*$/.test(lines[i])) continue
    const marker = /^<!--\s*doc-test:\s*(skip|with)\s*(.*?)\s*-->\s*$/.exec(lines[i - 1] ?? '')
    let j = i + 1
    let pending = ''
    let start = j
    for (; j < lines.length && !lines[j].startsWith('```'); j++) {
      const { code, comment } = stripComment(lines[j])
      if (pending === '') start = j
      if (code.endsWith('\\')) { pending += code.slice(0, -1) + ' '; continue }
      const command = (pending + code).trim()
      pending = ''
      if (command === '') continue
      const base = { file, line: start + 1 }
      const own = /^doc-test:\s*skip\s*(.*)$/.exec(comment)
      if (marker?.[1] === 'skip') out.push({ ...base, command, kind: 'skip', reason: marker[2] })
      else if (own !== null) out.push({ ...base, command, kind: 'skip', reason: own[1] })
      else out.push({ ...base, ...classify(command), ...(marker?.[1] === 'with' ? { with: marker[2] } : {}) })
    }
    i = j
  }
  return out
}
