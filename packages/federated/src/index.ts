/** @webtune/federated: the federated client, privacy accounting, update codec and protocol types. */
export { PROTOCOL_VERSION } from './protocol.js';
export type {
  RegisterRequest, RegisterResponse, DpMode, RoundConfig, RoundInfo, UploadResponse, RoundStatus, ErrorCode, ErrorResponse,
} from './protocol.js';
export { encodeUpdate, decodeUpdate, globalNorm, cryptoUniform, UpdateRejectedError } from './codec.js';
export type { EncodeOptions, DecodedUpdate } from './codec.js';
