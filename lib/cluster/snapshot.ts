// The last good config on disk, for a boot while Redis is down: written atomically (tmp file + rename), mode 0600.
// The default place is a private directory of the user (0700), never a predictable name in the shared temp dir.
import { randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import os from 'node:os'
import { dirname, isAbsolute, join } from 'node:path'

/**
 * The default directory of the node's state files (snapshots): `$XDG_STATE_HOME/fastify-ha-gateway`, else
 * `~/.local/state/fastify-ha-gateway`, else (no home directory) `<tmpdir>/fastify-ha-gateway-<uid>`.
 */
export function defaultStateDir (env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, 'fastify-ha-gateway')
  let home = ''
  try { home = os.homedir() } catch {}
  if (home !== '' && home !== '/') return join(home, '.local', 'state', 'fastify-ha-gateway')
  return join(os.tmpdir(), `fastify-ha-gateway-${process.getuid?.() ?? 'user'}`)
}

/**
 * `dir` as a private directory: created with mode 0700, or, when it exists, a real directory (not a link) of
 * this user with group and others shut out (the mode is narrowed if it was wider). Throws otherwise.
 */
export async function ensurePrivateDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const st = await lstat(dir)
  if (!st.isDirectory()) throw new Error(`state directory ${dir} is not a directory`)
  const uid = process.getuid?.()
  if (uid !== undefined && st.uid !== uid) throw new Error(`state directory ${dir} belongs to another user (uid ${st.uid})`)
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700)
}

/**
 * Write `data` to `path` so a reader sees the old file or the new one, never half of one:
 * a temp file in the same directory (rename is atomic only within one file system), fsync, rename.
 * The file is mode 0600; missing directories are created 0700 (`privateDir`: the directory is made private too).
 */
export async function writeFileAtomic (path: string, data: string, opts: { privateDir?: boolean } = {}): Promise<void> {
  if (opts.privateDir === true) await ensurePrivateDir(dirname(path))
  else await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  // wx: never through a file (or link) already there
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}

/** The parsed JSON of `path`; undefined when the file is missing or not JSON. */
export async function readJsonFile (path: string): Promise<unknown> {
  let raw: string
  try {
    raw = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    return JSON.parse(raw) as unknown
  } catch {
    return undefined
  }
}
