/** @webtune/federated: the federated client, privacy accounting, update codec and protocol types. */
/// <reference types="@webgpu/types" preserve="true" />
export { PROTOCOL_VERSION, SUPPORTED_PROTOCOLS, protocolForMethod, protocolForRound, localDpSgdProblem } from './protocol.js';
export type {
  RegisterRequest, RegisterResponse, DpMode, LocalDpSgdConfig, RoundConfig, RoundInfo, UploadResponse, RoundStatus, ErrorCode, ErrorResponse,
} from './protocol.js';
export { encodeUpdate, decodeUpdate, globalNorm, cryptoUniform } from './codec.js';
export type { EncodeOptions, DecodedUpdate } from './codec.js';
// The accountant and the noise are @webtune/trainer's (DP-SGD uses them too), re-exported here by their old names.
export { DEFAULT_ORDERS, computeRdp, rdpToEpsilon, computeDpEpsilon, RdpAccountant, addGaussianNoise, secureUniform, secureStandardNormal } from '@webtune/trainer';
export type { RdpHistoryEntry, RdpAccountantJSON } from '@webtune/trainer';
export { clipGlobalNorm, localDpNoiseStd } from './dp.js';
export { FederatedClient } from './client.js';
export { FederatedError, UpdateRejectedError } from '@webtune/errors';
export type { FederatedClientOptions, FederatedEvent, RecordLevelPrivacy, RoundResult, SkipReason } from './client.js';
export { indexedDbRoundStore, MemoryRoundStore, defaultRoundStore, DEFAULT_ROUND_DB, DEFAULT_ROUND_STORE } from './round-store.js';
export type { RoundStateStore } from './round-store.js';
