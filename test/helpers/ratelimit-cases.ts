// One table of rate-limit cases, run against the in-memory twins (injected clock) and the Lua scripts (real Redis, real time).
import type { Test } from 'tap'
import type { Algorithm, Decision, LimitRule, RateLimitStore } from '../../lib/ratelimit/types.js'
import type { GrantSource } from '../../lib/ratelimit/grant.js'

export interface Harness {
  label: string
  store: RateLimitStore & GrantSource
  /** ms since EPOCH_MS by the store's own clock (Redis TIME for Redis). */
  clock (): Promise<number>
  /** Let `ms` pass (advances an injected clock). */
  sleep (ms: number): Promise<void>
  /** A key nobody used yet. */
  key (): string
  /** Real time: a stalled machine may need another try at a window position. */
  realTime: boolean
}

export interface Case { name: string, run (t: Test, h: Harness): Promise<void> }

const yn = (ds: Decision[]): string => ds.map((d) => d.allowed ? 'Y' : 'N').join('')

/** Sleep until `at` ms into a window of `window` ms (at least `gap` ms away). */
async function toPhase (h: Harness, window: number, at: number, gap = 5): Promise<void> {
  const phase = await h.clock() % window
  let wait = (at - phase + window) % window
  if (wait < gap) wait += window
  await h.sleep(wait)
}

/** Run `body` with a fresh key away from a window boundary (a long window: at most one short wait). */
async function inOneWindow (t: Test, h: Harness, window: number, body: (key: string) => Promise<void>): Promise<void> {
  const phase = await h.clock() % window
  if (phase > window - 2000) await h.sleep(window - phase + 10)
  await body(h.key())
}

const LONG: Record<Algorithm, number> = { fixed_window: 60_000, sliding_window: 60_000, token_bucket: 600_000 }

export const CASES: Case[] = [
  {
    name: 'fixed_window counts within a window and resets at its end',
    async run (t, h) {
      const rule: LimitRule = { algorithm: 'fixed_window', limit: 3, window: 400 }
      for (let attempt = 0; attempt < 5; attempt++) {
        await toPhase(h, 400, 40)
        const key = h.key()
        const before = await h.clock() % 400
        const ds: Decision[] = []
        for (let i = 0; i < 4; i++) ds.push(await h.store.consume(key, rule, 1))
        const after = await h.clock() % 400
        if (after < before) continue // stalled past the boundary
        t.equal(yn(ds), 'YYYN')
        t.same(ds.map((d) => d.remaining), [2, 1, 0, 0])
        t.ok(ds.every((d) => d.limit === 3))
        t.ok(ds[0].resetMs >= 400 - after - 1 && ds[0].resetMs <= 400 - before + 1, `resetMs ${ds[0].resetMs}: the end of the window`)
        t.ok(ds[3].retryAfterMs >= 400 - after - 1 && ds[3].retryAfterMs <= 400 - before + 1, `retryAfterMs ${ds[3].retryAfterMs}`)
        t.equal(ds[0].retryAfterMs, 0)
        await h.sleep(ds[3].retryAfterMs + 10)
        const next = await h.store.consume(key, rule, 1)
        t.ok(next.allowed, 'a new window starts full')
        t.equal(next.remaining, 2)
        return
      }
      t.fail('never placed the requests within one window')
    },
  },
  ...(['fixed_window', 'sliding_window', 'token_bucket'] as const).map((algorithm): Case => ({
    name: `${algorithm}: cost > 1 spends that many units, a refusal spends nothing`,
    async run (t, h) {
      const rule: LimitRule = { algorithm, limit: 10, window: LONG[algorithm] }
      await inOneWindow(t, h, rule.window, async (key) => {
        const ds = [
          await h.store.consume(key, rule, 4),
          await h.store.consume(key, rule, 4),
          await h.store.consume(key, rule, 4),
          await h.store.consume(key, rule, 11),
          await h.store.consume(key, rule, 2),
          await h.store.consume(key, rule, 1),
        ]
        t.equal(yn(ds), 'YYNNYN')
        t.same(ds.map((d) => d.remaining), [6, 2, 0, 0, 0, 0])
        t.ok(ds[2].retryAfterMs > 0 && ds[3].retryAfterMs > 0, 'refusals carry a retry hint')
      })
    },
  })),
  {
    name: 'window boundary: fixed_window lets 2x limit through, sliding_window stays within limit * (1 + d / window)',
    async run (t, h) {
      const limit = 10
      const window = 500
      for (const algorithm of ['fixed_window', 'sliding_window'] as const) {
        const rule: LimitRule = { algorithm, limit, window }
        let done = false
        for (let attempt = 0; attempt < 5 && !done; attempt++) {
          const key = h.key()
          await toPhase(h, window, 430)
          const start = await h.clock()
          const before = await Promise.all(Array.from({ length: limit }, async () => await h.store.consume(key, rule, 1)))
          const mid = await h.clock()
          if (Math.floor(mid / window) !== Math.floor(start / window)) continue
          await toPhase(h, window, 10)
          const after = await Promise.all(Array.from({ length: limit }, async () => await h.store.consume(key, rule, 1)))
          const end = await h.clock()
          if (Math.floor(end / window) !== Math.floor(start / window) + 1) continue
          done = true
          const passed = [...before, ...after].filter((d) => d.allowed).length
          const span = end - start
          t.equal(before.filter((d) => d.allowed).length, limit, `${algorithm}: a full budget before the boundary`)
          if (algorithm === 'fixed_window') t.equal(passed, 2 * limit, `fixed_window: ${passed} passed within ${span.toFixed(1)} ms`)
          else {
            const bound = Math.floor(limit * (1 + Math.min(span, window) / window))
            t.ok(passed <= bound, `sliding_window: ${passed} passed within ${span.toFixed(1)} ms (bound ${bound})`)
            if (!h.realTime) t.equal(passed, limit, 'injected clock: nothing passes 10 ms after the boundary')
          }
        }
        if (!done) t.fail(`${algorithm}: never placed two bursts around a boundary`)
      }
    },
  },
  {
    name: 'token_bucket (GCRA): a burst of limit, then one unit per window / limit',
    async run (t, h) {
      const rule: LimitRule = { algorithm: 'token_bucket', limit: 5, window: 500 } // T = 100 ms
      const key = h.key()
      const start = await h.clock()
      const burst = await Promise.all(Array.from({ length: 8 }, async () => await h.store.consume(key, rule, 1)))
      const took = await h.clock() - start
      t.equal(burst.filter((d) => d.allowed).length, 5, `burst: 5 of 8 pass (in ${took.toFixed(1)} ms)`)
      const refusal = burst.find((d) => !d.allowed)!
      t.ok(refusal.retryAfterMs >= 100 - took - 1 && refusal.retryAfterMs <= 100, `retry after ~T: ${refusal.retryAfterMs}`)
      t.ok(refusal.resetMs >= 500 - took - 1 && refusal.resetMs <= 500, `reset after ~window: ${refusal.resetMs}`)
      // Steady: each retry hint is honoured exactly once
      let wait = refusal.retryAfterMs
      for (let i = 0; i < 4; i++) {
        const before = await h.clock()
        await h.sleep(wait + 2)
        // Sent together: Redis runs them back to back, however slow this machine is between calls
        const [pass, again] = await Promise.all([h.store.consume(key, rule, 1), h.store.consume(key, rule, 1)])
        const slept = await h.clock() - before
        t.ok(pass.allowed, `unit ${i + 1} back after the hint`)
        // A second unit is due only wait + T after the hint: a machine that stalled that long proves nothing
        if (slept < wait + 100 - 10) t.notOk(again.allowed, 'and only one')
        else t.comment(`stalled ${slept.toFixed(0)} ms: a second unit may be due`)
        // after a stall the second unit (and more) may have passed too: the next hint is the first refusal's
        let next = again
        while (next.allowed) next = await h.store.consume(key, rule, 1)
        wait = next.retryAfterMs
        t.ok(wait <= 100, `next in <= T: ${wait}`)
      }
      // Rate over a longer span: at most burst + elapsed / T
      const key2 = h.key()
      const t0 = await h.clock()
      let passed = 0
      while (await h.clock() - t0 < 1000) {
        if ((await h.store.consume(key2, rule, 1)).allowed) passed++
        await h.sleep(20)
      }
      const elapsed = await h.clock() - t0
      t.ok(passed <= 5 + Math.floor(elapsed / 100) + 1, `${passed} passed in ${elapsed.toFixed(0)} ms: <= burst + elapsed / T`)
      t.ok(passed >= 5 + Math.floor(elapsed / 100 / 2), 'and the rate is not starved')
    },
  },
  ...(['fixed_window', 'sliding_window', 'token_bucket'] as const).map((algorithm): Case => ({
    name: `${algorithm}: take() grants min(want, available), refund() gives units back to their window`,
    async run (t, h) {
      const rule: LimitRule = { algorithm, limit: 10, window: LONG[algorithm] }
      await inOneWindow(t, h, rule.window, async (key) => {
        const a = await h.store.take(key, rule, 4, 1)
        const b = await h.store.take(key, rule, 8, 1)
        const c = await h.store.take(key, rule, 1, 1)
        t.same([a.granted, b.granted, c.granted], [4, 6, 0])
        t.same([a.remaining, b.remaining], [6, 0])
        t.notOk(c.allowed)
        const d = await h.store.take(key, rule, 5, 5)
        t.notOk(d.allowed, 'min above what is left: refused')
        await h.store.refund(key, rule, 3, b.epoch)
        if (algorithm !== 'token_bucket') await h.store.refund(key, rule, 3, b.epoch - 1) // an older window: ignored
        const e = await h.store.take(key, rule, 5, 1)
        t.equal(e.granted, 3, 'three units back, not more')
      })
    },
  })),
]
