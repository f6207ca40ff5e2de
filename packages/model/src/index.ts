/** @webtune/model: model and tensor files. */
export {
  parseSafetensors, parseSafetensorsHeader, serializeSafetensors, tensorToFloat32, parseShardIndex,
  SAFETENSORS_DTYPE_BYTES, MAX_HEADER_BYTES,
} from './safetensors.js';
export type {
  SafetensorsDType, SafetensorsEntry, SafetensorsHeader, SafetensorsTensor, SafetensorsFile, TensorToWrite, ShardIndex,
} from './safetensors.js';
