// Durations in the config: a number of milliseconds, or a string such as `500ms`, `1.5s`, `5m`, `1h`.

/** Largest delay a Node timer honours: setTimeout fires at once (with a warning) above 2^31 - 1 ms. */
export const MAX_DURATION_MS = 2_147_483_647

/** The string form the schema accepts; parseDuration accepts exactly these (plus numbers). */
export const DURATION_PATTERN = '^(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h)|\\d+)$'

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * Milliseconds for a config duration. Numbers are milliseconds; a string of plain digits is
 * milliseconds too; a fraction needs a unit (`1.5s`). Throws a RangeError on anything else.
 */
export function parseDuration (v: number | string): number {
  let ms: number
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`invalid duration ${String(v)}: must be a number of milliseconds >= 0`)
    ms = v
  } else if (typeof v === 'string') {
    const m = DURATION_RE.exec(v)
    // plain digits are ms; "1.5" without a unit is ambiguous, so it needs one
    if (m === null || (m[2] === undefined && m[1].includes('.'))) {
      throw new RangeError(`invalid duration ${JSON.stringify(v)}: use milliseconds or a string like 500ms, 1s, 1.5s, 5m, 1h`)
    }
    // rounded to the microsecond: 1.1 * 1000 is 1100.0000000000002 in floating point
    ms = Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms'] * 1000) / 1000
  } else {
    throw new RangeError(`invalid duration ${String(v)}: must be a number or a string`)
  }
  if (ms > MAX_DURATION_MS) throw new RangeError(`invalid duration ${JSON.stringify(v)}: longer than ${MAX_DURATION_MS} ms (~24.8 days), the longest timer Node supports`)
  return ms
}

/** `1500` -> `1.5s`: the short form used in messages and summaries. */
export function formatDuration (ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % (size / 10) === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}
