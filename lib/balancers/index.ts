import { GatewayError } from '../errors.js'
import { STRATEGIES, type Balancer, type Strategy } from './types.js'
import { RoundRobinBalancer } from './round-robin.js'
import { WeightedRoundRobinBalancer } from './weighted-round-robin.js'
import { LeastConnectionsBalancer } from './least-connections.js'
import { ResponseTimeBalancer } from './response-time.js'
import { ConsistentHashBalancer } from './consistent-hash.js'
import { RandomBalancer } from './random.js'

export { STRATEGIES, usable } from './types.js'
export type { Balancer, PickContext, Strategy } from './types.js'
export { RoundRobinBalancer } from './round-robin.js'
export { WeightedRoundRobinBalancer, smoothSchedule } from './weighted-round-robin.js'
export { LeastConnectionsBalancer } from './least-connections.js'
export { ResponseTimeBalancer } from './response-time.js'
export { ConsistentHashBalancer, hash32 } from './consistent-hash.js'
export { RandomBalancer } from './random.js'

/** A new balancer for one pool: balancers keep per-pool state, so do not share one across pools. */
export function createBalancer (strategy: Strategy): Balancer {
  switch (strategy) {
    case 'round_robin': return new RoundRobinBalancer()
    case 'weighted_round_robin': return new WeightedRoundRobinBalancer()
    case 'least_connections': return new LeastConnectionsBalancer()
    case 'response_time': return new ResponseTimeBalancer()
    case 'consistent_hash': return new ConsistentHashBalancer()
    case 'random': return new RandomBalancer()
    default:
      throw new GatewayError('INVALID_CONFIG', `strategy must be one of ${STRATEGIES.join(', ')}, got "${String(strategy)}"`)
  }
}
