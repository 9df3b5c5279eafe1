// The one polling helper of the tests: wait for a condition with a deadline instead of a fixed sleep.

/**
 * Poll `fn` (sync or async) every `every` ms until it returns true; resolves the ms it took, or rejects after
 * `ms` naming `what`.
 */
export async function until (fn: () => boolean | Promise<boolean>, ms: number, what = 'condition', every = 10): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (await fn()) return performance.now() - t0
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, every))
  }
}
