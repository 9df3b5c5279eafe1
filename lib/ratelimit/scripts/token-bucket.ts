// token_bucket in Lua, as GCRA; its in-memory twin is algorithms/token-bucket.ts.
//
// GCRA, virtual scheduling form (ITU-T I.371, ATM Forum TM 4.0): one value per key, the theoretical
// arrival time TAT, the moment every spent unit has been refilled. A unit refills every
// T = window / limit ms and the bucket holds `limit` units, so `n` units pass while
// (TAT - now) + n * T <= window. In any span of d ms at most limit + d / T units pass.

import type { DecideLua } from './batch.js'

/**
 * The state: a string, TAT in ms since EPOCH_MS, read once per call by `load`, changed by `decide`
 * (scripts/batch.ts) with `now` Redis's clock, written by `save`. `epoch` is unused: refunds are timeless here.
 * want >= 0: spend min(want, available) units, refused if that is below least (exact mode: want = least = cost);
 * want < 0: lease mode gives back -want units.
 */
const DECIDE = `
  -- debt: ms of spent units not yet refilled (no key: a full bucket)
  local tat = s.tat
  local debt = 0
  if tat and tat > now then debt = tat - now end

  if want < 0 then
    -- Refund: move TAT back by the refill time of the units, never before now (a full bucket)
    if debt > 0 then
      local back = math.max(tat + want * window / limit, now)
      s.tat = back
      s.px = math.max(math.ceil(back - now), 1)
      s.dirty = true
    end
    return 1, 0, 0, 0, 0, 0
  end

  -- Units in the bucket; 1e-6 absorbs float error so a refilled unit counts as whole
  local available = math.max(math.floor(limit * (window - debt) / window + 1e-6), 0)
  local granted = math.min(want, available)
  if granted < least then
    -- Refused, nothing spent: least units are back once the debt is down to window - least * T
    local wait = debt
    if least <= limit then wait = debt - window * (limit - least) / limit end
    return 0, 0, math.ceil(debt), math.max(math.ceil(wait), 1), 0, 0
  end

  local nextDebt = debt + granted * window / limit
  if granted > 0 then
    -- Spend: push TAT forward; once it has passed the bucket is full and the key can go
    s.tat = now + nextDebt
    s.px = math.ceil(nextDebt)
    s.dirty = true
  end
  return 1, available - granted, math.ceil(nextDebt), 0, granted, 0
`

export const TOKEN_BUCKET: DecideLua = {
  helpers: '',
  load: `
  return { tat = tonumber(redis.call('GET', key)) }
`,
  decide: DECIDE,
  // Redis keeps a number as %.17g: what the next call reads back is this double exactly
  save: `
  redis.call('SET', key, s.tat, 'PX', s.px)
`,
}
