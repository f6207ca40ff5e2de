/** @webtune/coordinator: the reference coordinator for protocols 1 to 4 (Node HTTP + SQLite). */
export { startCoordinator } from './server.js';
export type { CoordinatorOptions, CoordinatorHandle } from './server.js';
export { resolveConfig, resolveRoundConfig, checkAggregation, DEFAULT_CONFIG, ConfigError } from './config.js';
export type { CoordinatorConfig, ServerOptimizer, AggregationRule } from './config.js';
export {
  serverStep, accumulate, addGaussianNoise, cryptoGaussian, resolveOptimizer, weightedMean, coordinateMedian, trimmedMean, krum, robustAggregate,
} from './aggregate.js';
export type { OptimizerState } from './aggregate.js';
export { centralEpsilon } from './dp.js';
export { SCHEMA_VERSION } from './store.js';
export { maxUpdateNorm } from './core.js';
export { createInvite, revokeClient, listClients } from './admin.js';
export { DEFAULT_LIMITS } from './server.js';
export type { ServerLimits } from './server.js';
