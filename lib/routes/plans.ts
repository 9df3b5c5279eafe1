/**
 * The one per-route plan cache of the data path's plugins (rate limiter, load balancer, response cache): what a
 * route asked for, compiled once, on the route's first request, so routes declared before or after a plugin alike
 * get one and a request pays a WeakMap lookup. The key is the route config object (`routeConfigOf`): config sync
 * builds a new object for a changed route only, so an unchanged route keeps its plan (and the counters in it), and
 * a dropped one takes its plan with it (WeakMap).
 */
export class RoutePlans<P, A = undefined> {
  readonly #plans = new WeakMap<object, P>()
  readonly #make: (config: object, arg: A) => P

  /** `make` compiles the plan of a config it has not seen (`arg`: what it needs of the request, with no closure per call); it may throw (a bad route), and is asked again next time. */
  constructor (make: (config: object, arg: A) => P) {
    this.#make = make
  }

  /** The plan of `config`, made on first use. P must not include `undefined` (a "nothing to do" plan is `null` or a symbol). */
  of (config: object, arg: A): P {
    const plan = this.#plans.get(config)
    if (plan !== undefined) return plan
    const made = this.#make(config, arg)
    this.#plans.set(config, made)
    return made
  }
}
