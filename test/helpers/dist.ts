// dist/ (what `npx fastify-ha-gateway` runs and what consumers compile against) as fresh as the sources.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('../..', import.meta.url))
const SOURCES = ['index.ts', 'lib', 'plugins', 'types', 'bin', 'package.json', 'tsconfig.build.json']

function newest (p: string): number {
  const s = statSync(p)
  if (!s.isDirectory()) return s.mtimeMs
  return Math.max(0, ...readdirSync(p).map((n) => newest(join(p, n))))
}

/** True when dist/ exists and no source file is newer than it. */
export function distIsFresh (): boolean {
  try {
    const built = statSync(join(root, 'dist', 'index.d.ts')).mtimeMs
    return SOURCES.every((s) => newest(join(root, s)) <= built)
  } catch {
    return false
  }
}

/** Builds dist/ (`npm run build`) when a source is newer; one test file at a time builds (a lock directory). */
export async function ensureBuilt (): Promise<void> {
  const lock = join(root, '.tmp', 'build.lock')
  mkdirSync(join(root, '.tmp'), { recursive: true })
  for (;;) {
    if (distIsFresh()) return
    try {
      mkdirSync(lock)
    } catch {
      // another test file is building: wait for it (a lock older than 10 min was left by a killed run)
      try { if (Date.now() - statSync(lock).mtimeMs > 600_000) rmSync(lock, { recursive: true, force: true }) } catch {}
      await sleep(500)
      continue
    }
    try {
      if (!distIsFresh()) execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore', timeout: 600_000 })
    } finally {
      rmSync(lock, { recursive: true, force: true })
    }
    return
  }
}
