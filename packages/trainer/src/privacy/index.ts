/**
 * The privacy building blocks of DP-SGD: the RDP accountant, CSPRNG noise hardened against
 * floating-point attacks, Poisson sampling, and the budget (presets, estimates, noise multipliers).
 */
export {
  DEFAULT_ORDERS, computeRdp, rdpToEpsilon, computeDpEpsilon, RdpAccountant,
} from './accountant.js';
export type { RdpHistoryEntry, RdpAccountantJSON } from './accountant.js';
export { secureUniform, secureStandardNormal, gaussianNoise, addGaussianNoise, float32Tensors } from './noise.js';
export { PoissonSampler } from './poisson.js';
export { PRIVACY_PRESETS, DP_SGD_ORDERS, defaultDelta, estimatePrivacy, noiseMultiplierFor } from './budget.js';
export type { PrivacyPreset, PrivacyEstimateInput, PrivacyEstimate, NoiseMultiplierInput } from './budget.js';
