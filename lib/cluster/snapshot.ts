// The last good config on disk, for a boot while Redis is down: written atomically (tmp file + rename).
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Write `data` to `path` so a reader sees the old file or the new one, never half of one:
 * a temp file in the same directory (rename is atomic only within one file system), fsync, rename.
 */
export async function writeFileAtomic (path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'w', 0o600)
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
