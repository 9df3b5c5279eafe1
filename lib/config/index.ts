// The config layer: one schema for the YAML file and the plugin options.
export { ConfigError, formatIssue, type ConfigIssue } from './config-error.js'
export { parseDuration, formatDuration, MAX_DURATION_MS } from './duration.js'
export { substituteEnv, type Env } from './env.js'
export { REDACTED, redactConfig, redactText, redactError, isSecretKey } from './redact.js'
export { FORBIDDEN_KEYS, MAX_CONFIG_DEPTH, inputGuardIssues } from './input-guard.js'
export { validateConfig, validateConfigAsync, turn, configIssues, isNormalizedConfig, kNormalized, configInput, DEFAULTS, describeOptions, type OptionDescription } from './validate.js'
export { loadConfigFile, parseConfigText, applyEnvOverrides } from './load.js'
export { statusIn, statusRange } from './normalize.js'
export {
  GatewayConfigSchema, RATE_LIMIT_ALGORITHMS, STORE_ERROR_POLICIES, RETRY_CONDITIONS, LOG_LEVELS,
  type GatewayConfig, type GatewayConfigInput, type UpstreamConfigInput, type TargetConfigInput, type RouteConfigInput,
  type NodeConfig, type ClusterConfig, type RedisConfig, type UpstreamConfig, type TargetConfig,
  type HealthCheckConfig, type ActiveHealthCheckConfig, type PassiveHealthCheckConfig, type RecoveryConfig,
  type FailoverConfig, type RetryOn, type CircuitBreakerConfig, type TimeoutsConfig, type RouteConfig,
  type RateLimitRuleConfig, type RateLimitConfig, type AdminConfig, type MetricsConfig, type ProxyConfig,
  type DrainConfig, type LogConfig, type StatusRange,
} from './schema.js'
export { STRATEGIES, type Strategy } from '../balancers/types.js'
export { optionsTableMarkdown } from './options-table.js'
