// Checks a raw config before the schema sees it: keys that would reach an object's prototype, objects
// that inherit keys, and nesting deeper than any config. Iterative, so a hostile document cannot
// overflow the stack, and linear in the document.
import { joinPath, MAX_ISSUES, type ConfigIssue } from './config-error.js'

/** Keys refused anywhere in a config: in JavaScript they reach (or replace) an object's prototype. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])
/** Deepest nesting accepted: the schema itself is ~6 levels; free-form values (metadata, fallback bodies) get the rest. */
export const MAX_CONFIG_DEPTH = 32

/** The issues of `input` (at most MAX_ISSUES); [] when it is clean. */
export function inputGuardIssues (input: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const stack: Array<{ v: unknown, path: Array<string | number> }> = [{ v: input, path: [] }]
  while (stack.length > 0 && issues.length < MAX_ISSUES) {
    const { v, path } = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (path.length >= MAX_CONFIG_DEPTH) {
      issues.push({ path: joinPath(path), message: `nested deeper than ${MAX_CONFIG_DEPTH} levels: no config is` })
      continue
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: [...path, i] })
      continue
    }
    const proto = Object.getPrototypeOf(v) as unknown
    if (proto !== Object.prototype && proto !== null) {
      issues.push({ path: joinPath(path), message: 'must be a plain object (keys it inherits would be hidden config)' })
      continue
    }
    const keys = Object.keys(v)
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]
      if (FORBIDDEN_KEYS.has(k)) issues.push({ path: joinPath([...path, k]), message: `the key "${k}" is not allowed in a config (it would reach an object's prototype)` })
      else stack.push({ v: (v as Record<string, unknown>)[k], path: [...path, k] })
    }
  }
  return issues
}
