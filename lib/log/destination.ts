// Where a node's log goes: one buffered, asynchronous pino destination (stdout or a file) shared by the
// node's own log and its access lines, so lines never interleave mid-line and order is kept.
import { closeSync, openSync } from 'node:fs'
import pino from 'pino'
import { ConfigError } from '../config/index.js'

/** Bytes held before a write: one write per ~15 access lines instead of one per line. */
const MIN_LENGTH = 4096
/** A quiet node's lines still come out within this (ms). */
const FLUSH_EVERY = 1000

export interface LogDestination {
  /** Buffer a line (access lines: written when the buffer fills, or by the next periodic flush). */
  write (line: string): void
  /** The stream the node's own logger writes to: each of its lines is flushed soon, not held a second. */
  readonly loggerStream: { write (line: string): void }
  /** Write what is buffered now (async). */
  flush (): void
  /** Write what is buffered before returning (shutdown). */
  flushSync (): void
  /** Reopen a file destination (log rotation, SIGHUP); a no-op on stdout. */
  reopen (): void
  /** Flush, stop the timer, close a file; later writes are dropped. */
  close (): void
}

/** `destination`: 'stdout' or a file path (appended to; a path that cannot be opened fails boot). */
export function openLogDestination (destination: string): LogDestination {
  const file = destination === 'stdout' ? undefined : destination
  if (file !== undefined) {
    try {
      closeSync(openSync(file, 'a'))
    } catch (err) {
      throw new ConfigError([{ path: 'log.destination', message: `cannot open log file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }], { cause: err })
    }
  }
  // pino registers a synchronous flush of this stream on process exit
  const stream = pino.destination({ dest: file ?? 1, sync: false, minLength: MIN_LENGTH })
  let closed = false
  let reported = false
  // a full disk or a closed pipe must not take the gateway down: say it once, keep serving
  stream.on('error', (err: Error) => {
    if (!reported) process.stderr.write(`fastify-ha-gateway: log destination ${destination}: ${err.message}\n`)
    reported = true
  })
  const flush = (): void => {
    if (!closed) stream.flush()
  }
  const flushSync = (): void => {
    if (closed) return
    try { stream.flushSync() } catch { /* not open yet, or a write in flight: pino's exit hook flushes the rest */ }
  }
  const timer = setInterval(flush, FLUSH_EVERY)
  timer.unref()
  return {
    write (line: string): void { if (!closed) stream.write(line) },
    loggerStream: {
      write (line: string): void {
        if (closed) return
        stream.write(line)
        stream.flush()
      },
    },
    flush,
    flushSync,
    reopen (): void { if (!closed && file !== undefined) stream.reopen() },
    close (): void {
      if (closed) return
      clearInterval(timer)
      flushSync()
      closed = true
      if (file !== undefined) stream.end()
    },
  }
}
