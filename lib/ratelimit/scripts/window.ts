// fixed_window and sliding_window in Lua, built from one template: they share the window index, the state
// read, the refund, the spend-or-refuse step and the write; only the count, reset and wait differ.
import type { DecideLua } from './batch.js'
// Their in-memory twins are algorithms/fixed-window.ts and algorithms/sliding-window.ts.
//
// sliding_window is a two-window weighted counter, chosen over a sorted log: O(1) memory and work per key
// whatever the limit (a log holds `limit` timestamps per key, too much for 1000/h per client).
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

/** ms until the count weighs nothing (RateLimit reset), and ms until `least` units fit (Retry-After). */
const FIXED_HELPERS = `
-- Everything counted goes at the end of the window
local function resetOf (window, elapsed, c, p)
  if c > 0 then return math.ceil(window - elapsed) end
  return 0
end
local function waitFor (limit, window, elapsed, c, p, least)
  return math.ceil(window - elapsed)
end
`
const SLIDING_HELPERS = `
-- cur weighs until the end of the next window, prev until the end of this one
local function resetOf (window, elapsed, c, p)
  if c > 0 then return math.ceil(2 * window - elapsed) end
  if p > 0 then return math.ceil(window - elapsed) end
  return 0
end
local function waitFor (limit, window, elapsed, c, p, least)
  local wait
  if c + least <= limit then
    wait = window - (limit - c - least) * window / p - elapsed
  elseif least <= limit then
    wait = window - elapsed + math.max(window - (limit - least) * window / c, 0)
  else
    wait = resetOf(window, elapsed, c, p)
  end
  return math.max(math.ceil(wait), 1)
end
`

/**
 * The state: a hash { w = window index, c = units spent in window w, p (sliding) = units spent in window w - 1 },
 * read once per call by `load`, changed by `decide` (scripts/batch.ts) with `now` Redis's clock, written by `save`.
 * want >= 0: spend min(want, available) units, refused if that is below least (exact mode: want = least = cost);
 * want < 0: lease mode gives back -want units taken in window `epoch`.
 */
function windowLua (sliding: boolean): DecideLua {
  const only = (lua: string): string => sliding ? lua : ''
  const load = `
  local state = redis.call('HMGET', key, 'w', 'c'${only(", 'p'")})
  return { w = tonumber(state[1]), c = tonumber(state[2])${only(', p = tonumber(state[3])')} }
`
  const decide = `
  -- Windows are aligned on the epoch, so every node sees the same boundaries
  local w = math.floor(now / window)
  local elapsed = now - w * window
  local sw = s.w

  if want < 0 then
    -- Refund only into the stored window the units were counted in${sliding ? ', current or previous' : ', while it is the current one'}
    if sw == epoch${sliding ? '' : ' and epoch == w'} then
      s.c = math.max(s.c + want, 0)
      s.dirty = true${only(`
    elseif sw == epoch + 1 then
      s.p = math.max((s.p or 0) + want, 0)
      s.dirty = true`)}
    end
    return 1, 0, 0, 0, 0, w
  end

  -- A count kept for a window that is over is stale${only(': the current count becomes the previous one, older ones are gone')}
  local c = 0
  local p = 0
  if sw == w then
    c = s.c${only(`
    p = s.p or 0
  elseif sw == w - 1 then
    p = s.c`)}
  end
${sliding
  ? `  -- Share of the previous window still inside the sliding span [now - window, now]
  local available = math.max(math.floor(limit - c - p * (window - elapsed) / window), 0)`
  : '  local available = math.max(limit - c, 0)'}
  local granted = math.min(want, available)

  if granted < least then
    -- Refused, nothing spent${sliding
      ? '. The estimate falls linearly: solve for when least units fit'
      : ': the next window starts empty'}
    return 0, 0, resetOf(window, elapsed, c, p), waitFor(limit, window, elapsed, c, p, least), 0, w
  end

  c = c + granted
  if granted > 0 then
    -- Spend; the key dies once its counts weigh nothing (${sliding ? 'the end of the next window' : 'the end of this window'})
    s.w = w
    s.c = c${only(`
    s.p = p`)}
    s.ttl = ${sliding ? 'math.ceil(2 * window - elapsed)' : 'math.ceil(window - elapsed)'}
    s.dirty = true
  end
  return 1, available - granted, resetOf(window, elapsed, c, p), 0, granted, w
`
  const save = `${sliding
  ? `
  if s.p ~= nil then
    redis.call('HSET', key, 'w', s.w, 'c', s.c, 'p', s.p)
  else
    redis.call('HSET', key, 'w', s.w, 'c', s.c)
  end`
  : `
  redis.call('HSET', key, 'w', s.w, 'c', s.c)`}
  if s.ttl then
    redis.call('PEXPIRE', key, s.ttl)
  end
`
  return { helpers: sliding ? SLIDING_HELPERS : FIXED_HELPERS, load, decide, save }
}

export const FIXED_WINDOW = windowLua(false)
export const SLIDING_WINDOW = windowLua(true)
