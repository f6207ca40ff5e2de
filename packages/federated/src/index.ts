/** @webtune/federated: the federated client, privacy accounting, update codec and protocol types. */
/// <reference types="@webgpu/types" preserve="true" />
export { PROTOCOL_VERSION, SUPPORTED_PROTOCOLS, protocolForMethod } from './protocol.js';
export type {
  RegisterRequest, RegisterResponse, DpMode, RoundConfig, RoundInfo, UploadResponse, RoundStatus, ErrorCode, ErrorResponse,
} from './protocol.js';
export { encodeUpdate, decodeUpdate, globalNorm, cryptoUniform } from './codec.js';
export type { EncodeOptions, DecodedUpdate } from './codec.js';
export { DEFAULT_ORDERS, computeRdp, rdpToEpsilon, computeDpEpsilon, RdpAccountant } from './accountant.js';
export type { RdpHistoryEntry, RdpAccountantJSON } from './accountant.js';
export { clipGlobalNorm, addGaussianNoise, secureUniform, localDpNoiseStd } from './dp.js';
export { FederatedClient } from './client.js';
export { FederatedError, UpdateRejectedError } from '@webtune/errors';
export type { FederatedClientOptions, FederatedEvent, RoundResult, SkipReason } from './client.js';
export { indexedDbRoundStore, MemoryRoundStore, defaultRoundStore, DEFAULT_ROUND_DB, DEFAULT_ROUND_STORE } from './round-store.js';
export type { RoundStateStore } from './round-store.js';
