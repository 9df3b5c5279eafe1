// The frame every rate-limit script shares: Redis's clock read once, then one decision per key, in order.
import { LUA_NOW } from './clock.js'

/**
 * Lua of one algorithm: helpers at script level, and the bodies of three functions:
 * `load(key)` reads a key's state into a table, `decide(s, limit, window, want, least, epoch)` changes it and
 * returns the six values of a grant (setting `s.dirty` when there is something to write), `save(key, s)` writes it.
 */
export interface DecideLua { readonly helpers: string, readonly load: string, readonly decide: string, readonly save: string }

/** Values per key in a script's reply, and arguments per key after the keys. */
export const REPLY_WIDTH = 6
export const ARGS_PER_KEY = 5

/**
 * One call decides for every key of KEYS, atomically (Lua runs alone in Redis, so decisions of many nodes
 * never interleave) and in order (a key named twice sees its first spend).
 * KEYS[i]: the state of one decision (a key named twice is read once and written once).
 * Per key 5 numbers: limit, window (ms), want, least, epoch, given either
 * - as ARGV[5i-4 .. 5i]; then the reply is an array of 6 numbers per key: allowed (1/0), remaining, resetMs,
 *   retryAfterMs, granted, epoch (a batch of one key is the classic `EVALSHA sha 1 key limit window want least epoch`);
 * - or packed, all in ARGV[1] separated by spaces; then the reply is the same numbers in one string, separated by
 *   spaces. What the store sends: a client encodes one argument instead of 5 per key and decodes one string
 *   instead of an array of 6 per key (ioredis spends ~1 µs per array element on both sides).
 */
export function batchScript (algorithm: DecideLua): string {
  return `${LUA_NOW}${algorithm.helpers}
local function load (key)${algorithm.load}end
local function decide (s, limit, window, want, least, epoch)${algorithm.decide}end
local function save (key, s)${algorithm.save}end

local argv = ARGV
local packed = #ARGV == 1
if packed then
  argv = {}
  local n = 0
  for v in string.gmatch(ARGV[1], '%S+') do
    n = n + 1
    argv[n] = v
  end
end
-- A key named several times (a busy client) is read once and written once; its decisions follow each other
local states = {}
local order = {}
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local s = states[key]
  if s == nil then
    s = load(key)
    states[key] = s
    order[#order + 1] = key
  end
  local a = ${ARGS_PER_KEY} * (i - 1)
  local o = ${REPLY_WIDTH} * (i - 1)
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] =
    decide(s, tonumber(argv[a + 1]), tonumber(argv[a + 2]), tonumber(argv[a + 3]), tonumber(argv[a + 4]), tonumber(argv[a + 5]))
end
for j = 1, #order do
  local s = states[order[j]]
  if s.dirty then save(order[j], s) end
end
-- Whole numbers print as integers (%.14g)
if packed then return table.concat(out, ' ') end
return out
`
}

/**
 * The numbers of a packed reply, into `into` (reused): digits and an optional minus sign, separated by single
 * spaces; anything else (a fraction, an exponent) is read by Number().
 */
export function parsePacked (s: string, into: number[]): number[] {
  into.length = 0
  const end = s.length
  let i = 0
  while (i < end) {
    const start = i
    let neg = false
    if (s.charCodeAt(i) === 45) { neg = true; i++ }
    let n = 0
    let c = s.charCodeAt(i)
    while (c >= 48 && c <= 57) {
      n = n * 10 + (c - 48)
      c = s.charCodeAt(++i)
    }
    if (i < end && c !== 32) {
      // not a plain integer: read the whole token
      while (i < end && s.charCodeAt(i) !== 32) i++
      into.push(Number(s.slice(start, i)))
    } else {
      into.push(neg ? -n : n)
    }
    i++ // the space
  }
  return into
}
