/** The architecture registry: one descriptor per family; adding one is a file here plus goldens. */
import { UnsupportedModelError } from '@webtune/errors';
import type { Architecture, ModelConfig } from '../config.js';
import { gpt2 } from './gpt2.js';
import { llama } from './llama.js';
import type { ArchitectureDescriptor } from './types.js';

export const ARCHITECTURES: readonly ArchitectureDescriptor[] = [llama, gpt2];

/** The descriptor of a config (or an architecture name). */
export function architectureOf(config: ModelConfig | Architecture): ArchitectureDescriptor {
  const name = typeof config === 'string' ? config : config.architecture;
  const found = ARCHITECTURES.find((a) => a.name === name);
  if (!found) throw new UnsupportedModelError('architecture', `"${String(name)}" is not one of ${ARCHITECTURES.map((a) => a.name).join(', ')}`);
  return found;
}

/** The descriptor that reads config.json's model_type, or undefined. */
export function architectureForModelType(modelType: string): ArchitectureDescriptor | undefined {
  return ARCHITECTURES.find((a) => a.modelTypes.includes(modelType));
}

/** Every linear module suffix each architecture has, in the order its layers run them. */
export const LINEAR_MODULES: Readonly<Record<Architecture, readonly string[]>> = Object.fromEntries(ARCHITECTURES.map((a) => [a.name, a.linears])) as Record<Architecture, readonly string[]>;

/** The MLP's linear suffixes (gate, up, down; or fc, proj). */
export function mlpLinears(config: ModelConfig | Architecture): readonly string[] {
  const mlp = architectureOf(config).mlp;
  return mlp.kind === 'swiglu' ? [mlp.gate, mlp.up, mlp.down] : [mlp.fc, mlp.proj];
}

/** HF module path of a linear, e.g. `model.layers.3.self_attn.q_proj`. */
export function modulePath(config: ModelConfig | Architecture, layer: number, linear: string): string {
  return `${architectureOf(config).layerPrefix(layer)}.${linear}`;
}

/**
 * The architecture, layer and linear of an HF module path (`model.layers.3.self_attn.q_proj` ->
 * llama, 3, self_attn.q_proj), or undefined when no descriptor names it so.
 */
export function parseModulePath(module: string): { architecture: Architecture; layer: number; name: string } | undefined {
  for (const arch of ARCHITECTURES) {
    const [head, tail] = arch.layerPrefix(0x7fffffff).split(String(0x7fffffff)) as [string, string];
    if (!module.startsWith(head)) continue;
    const match = /^(\d+)/.exec(module.slice(head.length));
    if (!match) continue;
    const rest = module.slice(head.length + match[1]!.length);
    if (!rest.startsWith(`${tail}.`)) continue;
    const name = rest.slice(tail.length + 1);
    if (arch.linears.includes(name)) return { architecture: arch.name, layer: Number(match[1]), name };
  }
  return undefined;
}

export type { ArchitectureDescriptor, AttentionLinears, MlpLinears, ArchitectureNames, DefaultTargets } from './types.js';
