/** Readers of config.json fields shared by the architecture descriptors (errors name the file and the field). */
import { ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import type { ModelConfig, RopeScaling } from '../config.js';

export type RawConfig = Record<string, unknown>;

export function num(raw: RawConfig, key: string, source: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ModelFormatError(source, `config.json has no "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelFormatError(source, `config.json "${key}" is ${JSON.stringify(v)}, not a number`);
  return v;
}

export function positiveInt(raw: RawConfig, key: string, source: string, fallback?: number): number {
  const v = num(raw, key, source, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ModelFormatError(source, `config.json "${key}" is ${v}, not a positive integer`);
  return v;
}

export function ropeScaling(raw: RawConfig, source: string): RopeScaling {
  const s = raw['rope_scaling'] as RawConfig | null | undefined;
  if (!s) return { type: 'default' };
  const type = (s['rope_type'] ?? s['type']) as string | undefined;
  switch (type) {
    case undefined:
    case 'default':
      return { type: 'default' };
    case 'linear':
      return { type: 'linear', factor: num(s, 'factor', source) };
    case 'llama3':
      return {
        type: 'llama3',
        factor: num(s, 'factor', source),
        lowFreqFactor: num(s, 'low_freq_factor', source),
        highFreqFactor: num(s, 'high_freq_factor', source),
        originalMaxPositionEmbeddings: positiveInt(s, 'original_max_position_embeddings', source),
      };
    default:
      throw new UnsupportedModelError(source, `rope_scaling type "${type}" is not supported (supported: default, linear, llama3)`);
  }
}

/** bos/eos token ids from config.json, when present. */
export function withTokens(config: ModelConfig, raw: RawConfig): ModelConfig {
  const bos = raw['bos_token_id'];
  const eos = raw['eos_token_id'];
  if (typeof bos === 'number') config.bosTokenId = bos;
  if (typeof eos === 'number' || (Array.isArray(eos) && eos.every((e) => typeof e === 'number'))) config.eosTokenId = eos as number | number[];
  return config;
}
