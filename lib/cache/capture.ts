// Copy a response body while it streams to the client, up to a limit.
import { Transform, type TransformCallback } from 'node:stream'

/**
 * A pass-through that hands `done` the whole body once it ended, or undefined if it grew past
 * `limit` bytes (collecting stops there; the body still streams through). A body that never ends
 * (client gone, upstream reset) never calls `done`.
 */
export function captureBody (limit: number, done: (body: Buffer | undefined) => void): Transform {
  let chunks: Buffer[] = []
  let size = 0
  let over = false
  return new Transform({
    transform (chunk: Buffer | string, _enc: BufferEncoding, cb: TransformCallback) {
      if (!over) {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
        size += b.length
        if (size > limit) {
          over = true
          chunks = []
        } else {
          chunks.push(b)
        }
      }
      cb(null, chunk)
    },
    flush (cb: TransformCallback) {
      const body = over ? undefined : Buffer.concat(chunks, size)
      chunks = []
      cb()
      done(body)
    },
  })
}
