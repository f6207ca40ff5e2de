/** @webtune/federated: the federated client, privacy accounting, update codec and protocol types. */
/// <reference types="@webgpu/types" preserve="true" />
export { PROTOCOL_VERSION, SUPPORTED_PROTOCOLS, SECAGG_ROUTES, protocolForMethod, protocolForRound, localDpSgdProblem } from './protocol.js';
export type {
  RegisterRequest, RegisterResponse, DpMode, LocalDpSgdConfig, RoundConfig, RoundInfo, UploadResponse, RoundStatus, ErrorCode, ErrorResponse,
  SecAggCurveName, SecureAggregationConfig, SecAggStage, SecAggStatus, SecAggAck, AdvertiseKeysRequest, ShareKeysRequest, UnmaskRequest,
} from './protocol.js';
// Secure aggregation (SecAgg+): the pieces both the client and the coordinator compute.
export { curveSupported, fromBase64, toBase64, publicKeyBytes } from './secagg/crypto.js';
export type { SecAggCurve } from './secagg/crypto.js';
export { MODULUS, maxParticipants, quantizationStep, quantizationProblem, quantize, dequantizeSum } from './secagg/quantize.js';
export { neighboursOf, resolveNeighbours, resolveThreshold, decodeMaskedInput, MASKED_HEADER_BYTES } from './secagg/masks.js';
export { unmaskSum } from './secagg/unmask.js';
export type { UnmaskInput } from './secagg/unmask.js';
export { decodeShareValue, SHARE_BYTES } from './secagg/shamir.js';
export type { Share } from './secagg/shamir.js';
export { encodeUpdate, decodeUpdate, globalNorm, cryptoUniform } from './codec.js';
export type { EncodeOptions, DecodedUpdate } from './codec.js';
// The accountant and the noise are @webtune/trainer's (DP-SGD uses them too), re-exported here by their old names.
export { DEFAULT_ORDERS, computeRdp, rdpToEpsilon, computeDpEpsilon, RdpAccountant, addGaussianNoise, secureUniform, secureStandardNormal } from '@webtune/trainer';
export type { RdpHistoryEntry, RdpAccountantJSON } from '@webtune/trainer';
export { clipGlobalNorm, localDpNoiseStd } from './dp.js';
export { FederatedClient } from './client.js';
export { FederatedError, UpdateRejectedError, SecureAggregationError } from '@webtune/errors';
export type { FederatedClientOptions, FederatedEvent, RecordLevelPrivacy, RoundResult, SecureRoundReport, SkipReason } from './client.js';
export { indexedDbRoundStore, MemoryRoundStore, defaultRoundStore, DEFAULT_ROUND_DB, DEFAULT_ROUND_STORE } from './round-store.js';
export type { RoundStateStore } from './round-store.js';
