import type { TripCause } from './events.js'

/** When does a closed circuit open? Cockatiel's two-method breaker interface, plus a reset. */
export interface BreakerStrategy {
  readonly cause: TripCause
  success (now: number): void
  /** Record a failure; true when the circuit should open now. */
  failure (now: number): boolean
  reset (): void
}
