// fixed_window in Lua; its in-memory twin is algorithms/fixed-window.ts.
import { LUA_NOW } from './clock.js'

/**
 * KEYS[1]: hash { w = window index, c = units spent in window w }.
 * ARGV: limit, window (ms), want, min, epoch.
 * Returns { allowed (1/0), remaining, resetMs, retryAfterMs, granted, epoch }.
 */
export const FIXED_WINDOW_LUA = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
-- want >= 0: spend min(want, available) units, refused if that is below least (exact mode: want = least = cost)
-- want < 0: lease mode gives back -want units taken in window ARGV[5]
local want = tonumber(ARGV[3])
local least = tonumber(ARGV[4])
${LUA_NOW}
-- Windows are aligned on the epoch, so every node sees the same boundaries
local w = math.floor(now / window)
local resetIn = math.ceil((w + 1) * window - now)

-- A count kept for an older window is stale: that window is over
local state = redis.call('HMGET', key, 'w', 'c')
local count = 0
if tonumber(state[1]) == w then count = tonumber(state[2]) end

if want < 0 then
  -- Refund only into the window the units were counted in
  if count > 0 and tonumber(ARGV[5]) == w then
    redis.call('HSET', key, 'c', math.max(count + want, 0))
  end
  return { 1, 0, 0, 0, 0, w }
end

local available = math.max(limit - count, 0)
local granted = math.min(want, available)
if granted < least then
  -- Refused, nothing spent; the next window starts empty
  local reset = 0
  if count > 0 then reset = resetIn end
  return { 0, 0, reset, resetIn, 0, w }
end

if granted > 0 then
  -- Spend, and let the key die with its window
  redis.call('HSET', key, 'w', w, 'c', count + granted)
  redis.call('PEXPIRE', key, resetIn)
end
local reset = 0
if count + granted > 0 then reset = resetIn end
return { 1, available - granted, reset, 0, granted, w }
`
