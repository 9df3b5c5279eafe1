// Small number and table helpers for the benchmark output (plain text and Markdown alike).

export function median (xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function fmt (x: number, digits = 0): string {
  if (!Number.isFinite(x)) return 'n/a'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function ratio (x: number, base: number): string {
  return Number.isFinite(x) && Number.isFinite(base) && base !== 0 ? (x / base).toFixed(2) : 'n/a'
}

export function mb (bytes: number): string { return `${(bytes / 1048576).toFixed(1)} MB` }

/** A Markdown table (also readable as plain text). */
export function table (head: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}
