// Building blocks of the config schema, and the type that maps the schema to its normalized form.
import { Type, type Static, type TArray, type TObject, type TOptional, type TProperties,
  type TRecord, type TSchema, type TUnion, type TUnsafe } from '@sinclair/typebox'
import { DURATION_PATTERN, MAX_DURATION_MS } from './duration.js'

/**
 * Annotation keywords the schema carries (registered with ajv, so strict mode accepts them):
 * `x-hint` is the human phrase for "what is allowed" used in error messages and the options table;
 * `x-kind` tells the normalizer how to convert a value (see normalize.ts); `x-positive` marks a duration that
 * must be longer than 0 (the code that runs it cannot take 0: a timer loop, a TTL, a deadline).
 */
export const ANNOTATIONS = ['x-hint', 'x-kind', 'x-positive'] as const
export type XKind = 'duration' | 'statuses' | 'retryOn' | 'oneOrMany'

// Type-only brands: a schema says what it becomes after normalization, and whether it is always there.
declare const NORMAL: unique symbol
declare const FILLED: unique symbol
/** The normalizer turns this schema's value into an N. */
export type NormalAs<S, N> = S & { readonly [NORMAL]: N }
/** Optional in the input, always present after normalization (a default, or a value derived from others). */
export type Filled<S> = S & { readonly [FILLED]: true }

type Evaluate<T> = { [K in keyof T]: T[K] } & {}
type OptionalOut<S> = S extends { readonly [FILLED]: true } ? false : S extends TOptional<TSchema> ? true : false
type NormalizedObject<P extends TProperties> = Evaluate<
  { [K in keyof P as OptionalOut<P[K]> extends true ? never : K]: Normalized<P[K]> } &
  { [K in keyof P as OptionalOut<P[K]> extends true ? K : never]?: Normalized<P[K]> }>

/** The static type of a schema's value after validateConfig: defaults filled, durations in ms. */
export type Normalized<S> =
  S extends { readonly [NORMAL]: infer N } ? N
    : S extends TObject<infer P> ? NormalizedObject<P>
      : S extends TArray<infer I> ? Array<Normalized<I>>
        : S extends TRecord<TSchema, infer V> ? Record<string, Normalized<V>>
          : S extends TUnion<infer U> ? Normalized<U[number]>
            : S extends TSchema ? Static<S> : never

interface Doc { description: string, 'x-hint'?: string }

/** A closed object: unknown keys are errors. */
export function Obj<P extends TProperties> (properties: P, description: string): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, description })
}

/** Optional with a default the normalizer fills in. */
export function Def<S extends TSchema> (schema: S, value: unknown): Filled<TOptional<S>> {
  return Type.Optional({ ...schema, default: value }) as Filled<TOptional<S>>
}

/** Optional in the input; the normalizer always fills it from other values (documented in its description). */
export function Derived<S extends TSchema> (schema: S): Filled<TOptional<S>> {
  return Type.Optional(schema) as Filled<TOptional<S>>
}

export function StringEnum<const T extends readonly string[]> (values: T, description: string): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], description })
}

const DURATION_HINT = 'a duration: milliseconds >= 0, or a string like 500ms, 1s, 1.5s, 5m, 1h'
const POSITIVE_HINT = 'a duration longer than 0: milliseconds > 0, or a string like 500ms, 1s, 1.5s, 5m, 1h'
export type DurationSchema = NormalAs<TUnion<[ReturnType<typeof Type.Number>, ReturnType<typeof Type.String>]>, number>

/**
 * `number | string` in the input, milliseconds after normalization. `positive`: 0 is refused (the schema
 * states it, so a stored config is one every node can run); the normalizer refuses "0s" and the like.
 */
export function Duration (description: string, opts: { positive?: boolean } = {}): DurationSchema {
  const positive = opts.positive === true
  return Type.Union([
    positive
      ? Type.Number({ exclusiveMinimum: 0, maximum: MAX_DURATION_MS, 'x-hint': POSITIVE_HINT })
      : Type.Number({ minimum: 0, maximum: MAX_DURATION_MS }),
    Type.String({ pattern: DURATION_PATTERN }),
  ], {
    description,
    'x-kind': 'duration',
    ...(positive ? { 'x-positive': true } : {}),
    'x-hint': positive ? POSITIVE_HINT : DURATION_HINT,
  }) as DurationSchema
}

/** A duration that must be longer than 0. */
export function PositiveDuration (description: string): DurationSchema {
  return Duration(description, { positive: true })
}

/** An HTTP status range, inclusive: [from, to]. */
export type StatusRange = [number, number]
const STATUS_ITEM_PATTERN = '^(?:[1-5]\\d\\d(?:-[1-5]\\d\\d)?|[1-5]xx)$'
const STATUS_HINT = 'an HTTP status (503), a range ("500-504") or a class ("5xx")'
/** One status item: 503, "500-504" or "5xx". */
export function StatusItem (): TUnion<[ReturnType<typeof Type.Integer>, ReturnType<typeof Type.String>]> {
  return Type.Union([Type.Integer({ minimum: 100, maximum: 599 }), Type.String({ pattern: STATUS_ITEM_PATTERN })],
    { 'x-hint': STATUS_HINT })
}
/** A list of statuses, normalized to inclusive ranges. */
export function Statuses (description: string): NormalAs<TArray<ReturnType<typeof StatusItem>>, StatusRange[]> {
  return Type.Array(StatusItem(), { description, minItems: 1, 'x-kind': 'statuses' }) as
    NormalAs<TArray<ReturnType<typeof StatusItem>>, StatusRange[]>
}

/** An absolute http(s) URL (format registered in validate.ts). */
export function HttpUrl (description: string): ReturnType<typeof Type.String> {
  return Type.String({ format: 'http-url', description, 'x-hint': 'an absolute http:// or https:// URL' })
}

/** An http(s) origin: scheme, host and port only (format registered in validate.ts). */
export function HttpOrigin (description: string): ReturnType<typeof Type.String> {
  return Type.String({ format: 'http-origin', description, 'x-hint': 'an http(s)://host[:port] URL without path, query or credentials' })
}

/** A deep copy of a schema without its `default` annotations (symbol keys kept: TypeBox needs them). */
export function withoutDefaults<S> (schema: S, isPropertyMap = false): S {
  if (Array.isArray(schema)) return schema.map(s => withoutDefaults(s)) as S
  if (schema === null || typeof schema !== 'object') return schema
  const out: Record<PropertyKey, unknown> = {}
  for (const k of Reflect.ownKeys(schema)) {
    // inside `properties`, "default" is an option name, not the annotation
    if (k !== 'default' || isPropertyMap) out[k] = withoutDefaults((schema as Record<PropertyKey, unknown>)[k], k === 'properties')
  }
  return out as S
}

/** `description` plus the optional hint, for the option builders above. */
export function doc (description: string, hint?: string): Doc {
  return hint === undefined ? { description } : { description, 'x-hint': hint }
}
