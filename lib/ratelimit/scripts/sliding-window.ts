// sliding_window in Lua, as a two-window weighted counter; its in-memory twin is algorithms/sliding-window.ts.
//
// Chosen over a sorted log: O(1) memory and work per key whatever the limit (a log holds `limit`
// timestamps per key, too much for 1000/h per client).
// estimate(t) = prev * (W - e) / W + cur, e = ms elapsed in the current window (Cloudflare, "How we built
// rate limiting capable of scaling to millions of domains", 2017).
//
// Error bound. A unit passes at elapsed e of window k only while prev * (W - e) / W + cur + 1 <= limit,
// so the count of window k at e is at most limit - prev + prev * e / W. A span of d <= W ms across the
// boundary of window k holds at most prev units of window k-1 and that many of window k:
//   at most limit * (1 + d / W) units in any span of d <= W ms;
// a span inside one window holds at most limit, n whole windows at most n * limit. So a burst at a
// boundary passes `limit` (fixed_window: 2 * limit); the worst W-long span (all of window k-1 spent in
// its last instant, window k spent at the rate the weight decays) approaches 2 * limit. Against an exact
// sliding log the estimate under-counts by at most prev * e / W (the spread assumption), never over.
import { LUA_NOW } from './clock.js'

/**
 * KEYS[1]: hash { w = window index, c = units spent in window w, p = units spent in window w - 1 }.
 * ARGV: limit, window (ms), want, min, epoch.
 * Returns { allowed (1/0), remaining, resetMs, retryAfterMs, granted, epoch }.
 */
export const SLIDING_WINDOW_LUA = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
-- want >= 0: spend min(want, available) units, refused if that is below least (exact mode: want = least = cost)
-- want < 0: lease mode gives back -want units taken in window ARGV[5]
local want = tonumber(ARGV[3])
local least = tonumber(ARGV[4])
${LUA_NOW}
local w = math.floor(now / window)
local elapsed = now - w * window

local state = redis.call('HMGET', key, 'w', 'c', 'p')
local sw = tonumber(state[1])

if want < 0 then
  -- Refund into the stored window the units were counted in, current or previous
  local epoch = tonumber(ARGV[5])
  if sw == epoch then
    redis.call('HSET', key, 'c', math.max(tonumber(state[2]) + want, 0))
  elseif sw == epoch + 1 then
    redis.call('HSET', key, 'p', math.max((tonumber(state[3]) or 0) + want, 0))
  end
  return { 1, 0, 0, 0, 0, w }
end

-- Roll the stored windows forward: the current count becomes the previous one, older ones are gone
local c = 0
local p = 0
if sw == w then
  c = tonumber(state[2])
  p = tonumber(state[3]) or 0
elseif sw == w - 1 then
  p = tonumber(state[2])
end

-- Share of the previous window still inside the sliding span [now - window, now]
local weighted = p * (window - elapsed) / window
local available = math.max(math.floor(limit - c - weighted), 0)
local granted = math.min(want, available)

-- ms until the estimate is 0: cur weighs until the end of the next window, prev until the end of this one
local function resetOf (cur)
  if cur > 0 then return math.ceil(2 * window - elapsed) end
  if p > 0 then return math.ceil(window - elapsed) end
  return 0
end

if granted < least then
  -- Refused, nothing spent. The estimate falls linearly: solve for when least units fit
  local wait
  if c + least <= limit then
    wait = window - (limit - c - least) * window / p - elapsed
  elseif least <= limit then
    wait = window - elapsed + math.max(window - (limit - least) * window / c, 0)
  else
    wait = resetOf(c)
  end
  return { 0, 0, resetOf(c), math.max(math.ceil(wait), 1), 0, w }
end

c = c + granted
if granted > 0 then
  -- Spend; counted units weigh until the end of the next window, then the key dies
  redis.call('HSET', key, 'w', w, 'c', c, 'p', p)
  redis.call('PEXPIRE', key, math.ceil(2 * window - elapsed))
end
return { 1, available - granted, resetOf(c), 0, granted, w }
`
