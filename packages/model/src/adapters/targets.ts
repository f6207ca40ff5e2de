/**
 * Which modules a method adapts, shared by every method: PEFT's suffix rule for target_modules
 * and its `layers_to_transform` (a subset of layers; the rest stay frozen and, below the lowest
 * adapted layer, need no backward at all).
 */
import { InvalidArgumentError } from '@webtune/errors';
import { architectureOf } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import type { TargetModule } from './types.js';

/** PEFT's suffix rule: a module matches a target if its name equals it or ends with `.` + target. */
export function matchesTarget(moduleName: string, target: string): boolean {
  return moduleName === target || moduleName.endsWith(`.${target}`);
}

/** Throws unless every target matches some linear of the architecture (a typo would silently train nothing). */
export function checkTargets(model: ModelConfig, targets: readonly string[], method: string): void {
  const known = architectureOf(model).linears;
  for (const target of targets) {
    if (!known.some((m) => matchesTarget(m, target))) {
      throw new InvalidArgumentError(
        `${method} target "${target}" matches no linear module of a ${model.modelType} model; choose from ${known.map((m) => m.split('.').pop()).join(', ')}.`,
      );
    }
  }
}

/** Validates `layers_to_transform`: distinct layer indices of this model, sorted. */
export function checkLayers(model: ModelConfig, layers: readonly number[] | undefined, method: string): number[] | undefined {
  if (layers === undefined) return undefined;
  if (!Array.isArray(layers) || layers.length === 0) throw new InvalidArgumentError(`${method} layers must be a non-empty list of layer indices (or left out for every layer).`);
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= model.numLayers) {
      throw new InvalidArgumentError(`${method} layer ${JSON.stringify(l)} is not a layer of this model (0 to ${model.numLayers - 1}).`);
    }
  }
  return [...new Set(layers)].sort((a, b) => a - b);
}

/** The linears `targets` selects in `layers` (every layer when undefined), in layer order. */
export function selectModules(model: ModelConfig, targets: readonly string[], layers?: readonly number[]): TargetModule[] {
  const arch = architectureOf(model);
  const out: TargetModule[] = [];
  for (let layer = 0; layer < model.numLayers; layer++) {
    if (layers && !layers.includes(layer)) continue;
    for (const name of arch.linears) {
      const module = `${arch.layerPrefix(layer)}.${name}`;
      if (!targets.some((t) => matchesTarget(module, t))) continue;
      out.push({ module, layer, name, ...arch.linearShape(model, name) });
    }
  }
  return out;
}

/** The key a PEFT adapter file uses for a module's tensor, e.g. `base_model.model.<module>.lora_A.weight`. */
export function peftModuleKey(module: string, suffix: string): string {
  return `base_model.model.${module}.${suffix}`;
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === 'string' && t.length > 0);
const isLayers = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length > 0 && v.every((l) => Number.isSafeInteger(l) && (l as number) >= 0));

/** Model-free checks shared by the methods' `invalid`: field name -> what it must be, for the fields present or required. */
export function configProblem(raw: Record<string, unknown>, fields: Record<string, 'strings' | 'layers' | 'positive' | 'fraction' | 'boolean' | 'count'>): string | undefined {
  for (const [field, kind] of Object.entries(fields)) {
    const v = raw[field];
    const ok = kind === 'strings' ? isStrings(v)
      : kind === 'layers' ? isLayers(v)
        : kind === 'positive' ? typeof v === 'number' && Number.isFinite(v) && v > 0
          : kind === 'fraction' ? typeof v === 'number' && v >= 0 && v < 1
            : kind === 'boolean' ? typeof v === 'boolean'
              : Number.isSafeInteger(v) && (v as number) >= 1;
    if (!ok) {
      const want = { strings: 'a non-empty list of module names', layers: 'a non-empty list of layer indices', positive: 'a positive number', fraction: 'a number in [0, 1)', boolean: 'true or false', count: 'a positive integer' }[kind];
      return `"${field}" is ${JSON.stringify(v)}; expected ${want}`;
    }
  }
  return undefined;
}
