// Optional collaborators: the one place the suite's plugins ask whether a decorator exists.
// A mandatory one is declared in the plugin's fastify-plugin metadata (`dependencies`, `decorators`)
// and read directly; one the plugin works without (metrics, the cluster, an app's @fastify/redis)
// is read through here, so "absent" is an explicit undefined rather than a cast.
import type { FastifyInstance } from 'fastify'

/** The decorator `name` when a plugin registered it, else undefined. */
export function optional<K extends keyof FastifyInstance> (fastify: FastifyInstance, name: K): FastifyInstance[K] | undefined {
  return fastify.hasDecorator(name as string) ? fastify[name] : undefined
}

/** A decorator of another package the suite does not type (@fastify/redis's `redis`): unknown until checked. */
export function optionalForeign (fastify: FastifyInstance, name: string): unknown {
  return fastify.hasDecorator(name) ? (fastify as unknown as Record<string, unknown>)[name] : undefined
}
