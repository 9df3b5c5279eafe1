// After `port: ${PORT}` the value is the string "8080", as is a quoted `port: "8080"`: give it the type the schema wants there.
import type { PathSegments } from './env.js'

type AnySchema = Record<string, unknown>

/** The schemas that may apply at a path (several where a union branches). */
export function schemasAt (root: AnySchema, path: PathSegments): AnySchema[] {
  let current: AnySchema[] = [root]
  for (const seg of path) {
    const next: AnySchema[] = []
    for (const s of current.flatMap(expandUnion)) {
      if (typeof seg === 'number') {
        if (s.items !== undefined) next.push(s.items as AnySchema)
      } else if (s.properties !== undefined && seg in (s.properties as AnySchema)) {
        next.push((s.properties as Record<string, AnySchema>)[seg])
      } else if (s.patternProperties !== undefined) {
        next.push(...Object.values(s.patternProperties as Record<string, AnySchema>))
      }
    }
    current = next
  }
  return current.flatMap(expandUnion)
}

function expandUnion (s: AnySchema): AnySchema[] {
  const branches = (s.anyOf ?? s.oneOf) as AnySchema[] | undefined
  return branches === undefined ? [s] : branches.flatMap(expandUnion)
}

/**
 * In place: each value at `paths` that is a string becomes a boolean where the schema takes a boolean
 * and it reads true/false, or a number where the schema takes a number and it is numeric.
 */
export function coerceScalars (root: AnySchema, data: unknown, paths: readonly PathSegments[]): void {
  for (const path of paths) {
    if (path.length === 0) continue
    const parent = path.slice(0, -1).reduce<unknown>((node, seg) =>
      node !== null && typeof node === 'object' ? (node as Record<string | number, unknown>)[seg] : undefined, data)
    const key = path[path.length - 1]
    if (parent === null || typeof parent !== 'object') continue
    const holder = parent as Record<string | number, unknown>
    const value = holder[key]
    if (typeof value !== 'string') continue
    const types = new Set(schemasAt(root, path).map(s => s.type))
    if (types.has('boolean') && (value === 'true' || value === 'false')) holder[key] = value === 'true'
    else if ((types.has('integer') || types.has('number')) && /^-?\d+(?:\.\d+)?$/.test(value)) holder[key] = Number(value)
  }
}

/** The path of every string value in `data` (the YAML's scalars a loader may coerce). */
export function stringPaths (data: unknown, path: PathSegments = [], out: PathSegments[] = []): PathSegments[] {
  if (typeof data === 'string') out.push(path)
  else if (Array.isArray(data)) data.forEach((x, i) => stringPaths(x, [...path, i], out))
  else if (data !== null && typeof data === 'object') for (const [k, x] of Object.entries(data)) stringPaths(x, [...path, k], out)
  return out
}
