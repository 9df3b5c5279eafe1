// The response cache core: Cache-Control rules, stored entries, body capture, and the cache over the cluster's two-level cache.
export * from './cache-control.js'
export * from './policy.js'
export * from './entry.js'
export * from './capture.js'
export * from './response-cache.js'
export * from './cache-key.js'
