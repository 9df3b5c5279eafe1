// The Lua scripts by algorithm, with the ioredis command names they are defined under.
import type { Algorithm } from '../types.js'
import { FIXED_WINDOW_LUA } from './fixed-window.js'
import { SLIDING_WINDOW_LUA } from './sliding-window.js'
import { TOKEN_BUCKET_LUA } from './token-bucket.js'

export interface ScriptDef { readonly command: string, readonly lua: string }

// Prefixed names: an app's client may carry other scripts (@fastify/rate-limit defines `rateLimit`)
export const SCRIPTS: Record<Algorithm, ScriptDef> = {
  fixed_window: { command: 'fhgRateLimitFixedWindow', lua: FIXED_WINDOW_LUA },
  sliding_window: { command: 'fhgRateLimitSlidingWindow', lua: SLIDING_WINDOW_LUA },
  token_bucket: { command: 'fhgRateLimitTokenBucket', lua: TOKEN_BUCKET_LUA },
}

export { FIXED_WINDOW_LUA, SLIDING_WINDOW_LUA, TOKEN_BUCKET_LUA }
