// Lua preamble shared by every script: the clock is Redis's TIME, never a node's.
import { EPOCH_MS } from '../grant.js'

/**
 * Sets `now`, ms since EPOCH_MS (2024-01-01, Unix 1704067200 s) with µs precision.
 * Redis < 5 replicates scripts verbatim, so a script that reads TIME and writes must switch to
 * effects replication first; Redis >= 5 does that by default and Redis 7 keeps the call as a no-op.
 */
export const LUA_NOW = `
-- Replicate effects, not the script: TIME differs on a replica (a no-op on Redis >= 5)
if redis.replicate_commands then redis.replicate_commands() end
-- Redis's clock in ms since 2024-01-01 (EPOCH_MS): small numbers keep doubles precise to ~15 ns
local t = redis.call('TIME')
local now = (tonumber(t[1]) - ${EPOCH_MS / 1000}) * 1000 + tonumber(t[2]) / 1000
`
