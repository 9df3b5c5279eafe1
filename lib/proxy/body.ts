import type { Readable } from 'node:stream'

/**
 * Read a request body of a declared, small length into one Buffer, so a retry can send it
 * again. Resolves undefined if the stream fails or closes early (the client left).
 */
export function bufferBody (stream: Readable, length: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (v: Buffer | undefined): void => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onFail)
      stream.off('close', onFail)
      resolve(v)
    }
    const onData = (c: Buffer): void => { chunks.push(c); size += c.length }
    const onEnd = (): void => { done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)) }
    const onFail = (): void => { done(undefined) }
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('error', onFail)
    stream.once('close', onFail)
    if (length === 0 && stream.readableEnded) onEnd()
  })
}
