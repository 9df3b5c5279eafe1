// The Lua scripts by algorithm, with the ioredis command names they are defined under.
import type { Algorithm } from '../types.js'
import { batchScript } from './batch.js'
import { FIXED_WINDOW, SLIDING_WINDOW } from './window.js'
import { TOKEN_BUCKET } from './token-bucket.js'

export interface ScriptDef { readonly command: string, readonly lua: string }

export const FIXED_WINDOW_LUA = batchScript(FIXED_WINDOW)
export const SLIDING_WINDOW_LUA = batchScript(SLIDING_WINDOW)
export const TOKEN_BUCKET_LUA = batchScript(TOKEN_BUCKET)

// Prefixed names: an app's client may carry other scripts (@fastify/rate-limit defines `rateLimit`).
// Batch scripts take their key count first (no fixed numberOfKeys): `fhgRateLimitSlidingWindowBatch(n, keys, packedArgs)`.
export const SCRIPTS: Record<Algorithm, ScriptDef> = {
  fixed_window: { command: 'fhgRateLimitFixedWindowBatch', lua: FIXED_WINDOW_LUA },
  sliding_window: { command: 'fhgRateLimitSlidingWindowBatch', lua: SLIDING_WINDOW_LUA },
  token_bucket: { command: 'fhgRateLimitTokenBucketBatch', lua: TOKEN_BUCKET_LUA },
}

export { REPLY_WIDTH, ARGS_PER_KEY, parsePacked } from './batch.js'
