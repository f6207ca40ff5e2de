/**
 * Hugging Face parameter names for the weights of an ONNX decoder export, in the layout Optimum's
 * "text-generation-with-past" export and transformers.js use (scripts/make_onnx_fixtures.py
 * documents it with examples):
 *
 *   llama family (llama, qwen2, mistral)
 *     model.embed_tokens.weight, the norms          initializers of those names (as HF)
 *     model.layers.{i}.{self_attn,mlp}.*_proj       MatMul /model/layers.{i}/self_attn/q_proj/MatMul, input 1 an
 *                                                   [in, out] initializer (any name: torch calls it onnx::MatMul_<n>),
 *                                                   directly or through Cast (fp16 files) / Identity / Transpose;
 *                                                   or com.microsoft MatMulNBits .../q_proj/MatMul_Q4 (q4 files);
 *                                                   biases (qwen2 q/k/v): an Add after it, or an initializer named
 *                                                   model.layers.{i}.self_attn.q_proj.bias
 *     lm_head.weight (untied only)                  /lm_head/MatMul input 1 [H, V] (or MatMulNBits /lm_head/MatMul_Q4)
 *   gpt2
 *     transformer.{wte,wpe}.weight, ln_*            initializers of those names (or without "transformer.")
 *     transformer.h.{i}.{attn,mlp}.c_*              Gemm /transformer/h.{i}/attn/c_attn/Gemm (input 1 [in, out] = HF
 *                                                   Conv1D, input 2 the bias), a MatMul + Add form, MatMulNBits
 *                                                   .../Gemm_Q4 (+ Add of the bias), or initializers of the HF names
 *
 * Node names are found from the module path; when one is missing, initializers named after the HF
 * parameter are tried, then norms and embeddings are found from the nodes under the module path.
 * Every parameter the config needs is located and checked (shape against the config, data type,
 * external data present) here, so that a model that cannot be loaded fails at load with a typed
 * error; data is decoded (and q4 dequantized) only when the reader is asked for it.
 */
import { type NF4Quantized } from '@webtune/gpu';
import { InvalidArgumentError, ModelFileMissingError, ModelFormatError, UnsupportedModelError } from '@webtune/errors';
import { architectureOf, LINEAR_MODULES, linearHasBias, linearShape, modulePath, transpose, type ModelConfig, type WeightReader } from '@webtune/model';
import {
  dataTypeName,
  elementCount,
  OnnxDataType,
  tensorBytes,
  tensorToFloat32,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from './proto.js';

export interface OnnxQ4Source {
  /** The scales initializer ([N * k_blocks], block index fastest). */
  scales: string;
  /** The zero points initializer, when the node has one (uint8, two 4-bit values per byte, low nibble first; or float). Default 8. */
  zeroPoints?: string;
  blockSize: number;
  /** MatMulNBits K (in features) and N (out features). */
  K: number;
  N: number;
}

export interface OnnxWeightSource {
  /** The initializer holding the parameter (for q4: the packed B). */
  initializer: string;
  /** OnnxDataType of that initializer (FLOAT, FLOAT16, ...; UINT8 for q4). */
  dataType: number;
  /**
   * 'as-hf': the initializer's elements are in the HF parameter's layout; 'transposed': the
   * initializer is the transpose of the HF parameter (the usual case for Linear weights, which
   * MatMul keeps [in, out]). For q4, B rows are output features: 'as-hf' for Linear [out, in],
   * 'transposed' for GPT-2 Conv1D [in, out].
   */
  layout: 'as-hf' | 'transposed';
  q4?: OnnxQ4Source;
  /** The node that consumes it (MatMul, Gemm, MatMulNBits, Gather, Mul, Add, ...), when known. */
  node?: string;
}

export interface OnnxWeightMap {
  /** HF names -> float32 data in HF layout (q4 dequantized: (q - zero point) * scale). */
  reader: WeightReader & { names(): string[] };
  /** For each HF parameter: where it lives in the ONNX file, for the exporter. */
  sources: Map<string, OnnxWeightSource>;
  /** The initializer holding the transposed lm_head copy when lm_head is tied (informational). */
  tiedLmHeadCopy?: string;
}

const LLAMA_FAMILY = new Set(['llama', 'qwen2', 'mistral']);
const WEIGHT_OPS = new Set(['MatMul', 'Gemm', 'MatMulNBits']);
/** Quantized or otherwise unsupported ways of applying a weight. */
const UNSUPPORTED_WEIGHT_OPS = new Set([
  'DequantizeLinear', 'MatMulInteger', 'QLinearMatMul', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'QGemm',
  'MatMulBnb4', 'MatMulFpQ4', 'GatherBlockQuantized', 'QuantizeLinear', 'DequantizeBFP', 'QAttention', 'Attention',
  'GroupQueryAttention', 'MultiHeadAttention', 'FusedMatMul', 'QOrderedMatMul',
]);
const LINEAR_LOOKING = new Set([...WEIGHT_OPS, ...UNSUPPORTED_WEIGHT_OPS, 'Conv', 'Einsum']);
const NORM_OPS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization']);

interface Resolved {
  init: OnnxTensor;
  /** Whether a Transpose sits between the initializer and the consumer. */
  transposed: boolean;
}

interface Entry {
  shape: number[];
  load: () => Float32Array;
}

/** '/model/layers.0/self_attn/q_proj' for 'model.layers.0.self_attn.q_proj'. */
function nodePath(module: string): string {
  const parts: string[] = [];
  for (const p of module.split('.')) {
    if (/^\d+$/.test(p) && parts.length) parts[parts.length - 1] += `.${p}`;
    else parts.push(p);
  }
  return `/${parts.join('/')}`;
}

const fmt = (dims: readonly number[]) => `[${dims.join(', ')}]`;

function attrNumber(node: OnnxNode, name: string): number | undefined {
  const a: OnnxAttribute | undefined = node.attributes.get(name);
  if (!a) return undefined;
  if (a.type === 'int' || a.type === 'float') return a.value;
  return undefined;
}

class Mapper {
  readonly byName = new Map<string, OnnxNode>();
  readonly producer = new Map<string, OnnxNode>();
  readonly consumers = new Map<string, OnnxNode[]>();
  readonly claimed = new Set<OnnxNode>();
  readonly entries = new Map<string, Entry>();
  /** q4 weights the GPU kernels can keep 4-bit (see fourBitWeight). */
  readonly fourBit = new Map<string, { blockSize: number; read(): NF4Quantized }>();
  readonly sources = new Map<string, OnnxWeightSource>();
  readonly source: string;

  constructor(
    readonly model: OnnxModel,
    readonly config: ModelConfig,
    readonly externalData: ReadonlyMap<string, Uint8Array> | undefined,
  ) {
    this.source = model.source;
    for (const n of model.graph.nodes) {
      if (n.name && !this.byName.has(n.name)) this.byName.set(n.name, n);
      for (const o of n.outputs) if (o) this.producer.set(o, n);
      for (const i of n.inputs) {
        if (!i) continue;
        const list = this.consumers.get(i);
        if (list) list.push(n);
        else this.consumers.set(i, [n]);
      }
    }
  }

  private label(n: OnnxNode): string {
    return `${n.name ? `"${n.name}"` : '(unnamed)'} (${n.domain ? `${n.domain}:` : ''}${n.opType})`;
  }

  unsupportedNode(n: OnnxNode, what: string): never {
    throw new UnsupportedModelError(
      this.source,
      `node ${this.label(n)} applies ${what}, and webtune reads weights only from MatMul, Gemm, MatMulNBits (4-bit), Gather and Mul/Add nodes on float initializers; export the model as f32, fp16 or q4 (MatMulNBits) instead`,
    );
  }

  /** The initializer behind a node input, through Cast / Identity / 2-D Transpose. */
  resolve(input: string | undefined): Resolved | undefined {
    let name = input;
    let transposed = false;
    for (let depth = 0; depth < 8 && name; depth++) {
      const init = this.model.graph.initializers.get(name);
      if (init) return { init, transposed };
      const p = this.producer.get(name);
      if (!p) return undefined;
      if (UNSUPPORTED_WEIGHT_OPS.has(p.opType)) this.unsupportedNode(p, `${p.opType} to a weight`);
      if (p.opType === 'Cast' || p.opType === 'Identity') name = p.inputs[0];
      else if (p.opType === 'Transpose') {
        const perm = p.attributes.get('perm');
        if (perm && !(perm.type === 'ints' && perm.value.length === 2 && perm.value[0] === 1 && perm.value[1] === 0)) return undefined;
        transposed = !transposed;
        name = p.inputs[0];
      } else return undefined;
    }
    return undefined;
  }

  /** Checks that a tensor's bytes are all there (external file given, range and length right). */
  present(t: OnnxTensor): void {
    tensorBytes(this.model, t, this.externalData);
  }

  floatType(t: OnnxTensor, param: string, node?: OnnxNode): void {
    const d = t.dataType;
    if (d !== OnnxDataType.FLOAT && d !== OnnxDataType.FLOAT16 && d !== OnnxDataType.BFLOAT16 && d !== OnnxDataType.DOUBLE) {
      throw new UnsupportedModelError(
        this.source,
        `initializer "${t.name}" (for ${param}${node ? `, used by ${this.label(node)}` : ''}) is ${dataTypeName(d)}; webtune reads FLOAT, FLOAT16, BFLOAT16 and DOUBLE weights, and 4-bit weights through MatMulNBits`,
      );
    }
  }

  /** The first linear-looking node in graph order that no parameter has claimed, for error messages. */
  firstUnclaimedLinear(): string {
    for (const n of this.model.graph.nodes) {
      if (this.claimed.has(n) || !LINEAR_LOOKING.has(n.opType)) continue;
      const constWeight = n.inputs.slice(1).some((i) => {
        if (!i) return false;
        try {
          return this.resolve(i) !== undefined;
        } catch {
          return true; // fed by a quantization op: linear-looking too
        }
      });
      if (constWeight) return `the first linear-looking node not mapped to a parameter is ${this.label(n)}`;
    }
    return 'the graph has no other linear-looking node (MatMul/Gemm/MatMulNBits on an initializer)';
  }

  // --------------------------------------------------------------------------- named tensors

  addDense(param: string, hfShape: number[], r: Resolved, node: OnnxNode | undefined, storedShape: number[], layout: 'as-hf' | 'transposed'): void {
    const t = r.init;
    this.floatType(t, param, node);
    if (t.dims.length !== storedShape.length || t.dims.some((d, i) => d !== storedShape[i])) {
      throw new ModelFormatError(
        this.source,
        `initializer "${t.name}" for ${param}${node ? ` (used by ${this.label(node)})` : ''} has shape ${fmt(t.dims)}, but the config implies ${fmt(storedShape)}` +
          (layout === 'transposed' ? ` (the transpose of ${param} ${fmt(hfShape)})` : ''),
      );
    }
    this.present(t);
    if (node) this.claimed.add(node);
    const { model, externalData } = this;
    this.entries.set(param, {
      shape: hfShape,
      load: () => {
        const data = tensorToFloat32(model, t, externalData);
        return layout === 'transposed' ? transpose(data, storedShape[0]!, storedShape[1]!) : data;
      },
    });
    this.sources.set(param, { initializer: t.name, dataType: t.dataType, layout, ...(node?.name ? { node: node.name } : {}) });
  }

  /** A 1-D parameter (norm weight or bias, linear bias): stored with any shape of the right element count. */
  addVector(param: string, size: number, r: Resolved, node: OnnxNode | undefined): void {
    const t = r.init;
    this.floatType(t, param, node);
    if (elementCount(t) !== size || t.dims.filter((d) => d !== 1).length > 1) {
      throw new ModelFormatError(
        this.source,
        `initializer "${t.name}" for ${param}${node ? ` (used by ${this.label(node)})` : ''} has shape ${fmt(t.dims)}, but the config implies ${fmt([size])}`,
      );
    }
    this.addDense(param, [size], { init: t, transposed: false }, node, t.dims, 'as-hf');
  }

  /** An initializer named after the HF parameter (GPT-2 also without "transformer."). */
  byParamName(param: string): OnnxTensor | undefined {
    const inits = this.model.graph.initializers;
    const alternate = architectureOf(this.config).alternateName(param);
    return inits.get(param) ?? (alternate !== undefined ? inits.get(alternate) : undefined);
  }

  consumerOf(t: OnnxTensor): OnnxNode | undefined {
    const direct = this.consumers.get(t.name)?.[0];
    if (direct && (direct.opType === 'Cast' || direct.opType === 'Identity')) return this.consumers.get(direct.outputs[0] ?? '')?.[0] ?? direct;
    return direct;
  }

  embedding(param: string, shape: number[], gatherNode: string): void {
    const named = this.byParamName(param);
    if (named) {
      const user = this.consumerOf(named);
      if (user && UNSUPPORTED_WEIGHT_OPS.has(user.opType)) this.unsupportedNode(user, `${user.opType} to ${param}`);
      this.addDense(param, shape, { init: named, transposed: false }, user, shape, 'as-hf');
      return;
    }
    const node = this.byName.get(gatherNode) ?? [...this.byName.values()].find((n) => n.name.startsWith(`${gatherNode}_`));
    if (node) {
      if (node.opType !== 'Gather') this.unsupportedNode(node, `${node.opType} to ${param}`);
      const r = this.resolve(node.inputs[0]);
      if (r) {
        this.addDense(param, shape, r, node, shape, r.transposed ? 'transposed' : 'as-hf');
        return;
      }
    }
    throw new ModelFormatError(
      this.source,
      `no initializer "${param}" and no Gather node ${gatherNode} on an initializer was found for ${param} ${fmt(shape)}; is this an Optimum/transformers.js ${this.config.modelType} export?`,
    );
  }

  /** Norm weight or bias: the named initializer, else the norm node / Mul (weight) / Add (bias) under the module path. */
  norm(module: string, which: 'weight' | 'bias'): void {
    const param = `${module}.${which}`;
    const size = this.config.hiddenSize;
    const named = this.byParamName(param);
    if (named) {
      const user = this.consumerOf(named);
      if (user && UNSUPPORTED_WEIGHT_OPS.has(user.opType)) this.unsupportedNode(user, `${user.opType} to ${param}`);
      this.addVector(param, size, { init: named, transposed: false }, user);
      return;
    }
    const prefix = `${nodePath(module)}/`;
    let found: { r: Resolved; node: OnnxNode } | undefined;
    for (const n of this.model.graph.nodes) {
      if (!n.name.startsWith(prefix)) continue;
      if (NORM_OPS.has(n.opType)) {
        const r = this.resolve(n.inputs[which === 'weight' ? 1 : 2]);
        if (r) found = { r, node: n };
        break;
      }
      if (n.opType !== (which === 'weight' ? 'Mul' : 'Add')) continue;
      for (const i of n.inputs) {
        const r = this.resolve(i);
        if (r && elementCount(r.init) === size) found = { r, node: n }; // the last one: the affine step comes last
      }
    }
    if (!found) {
      throw new ModelFormatError(
        this.source,
        `no initializer "${param}" and no ${which === 'weight' ? 'Mul' : 'Add'} (or LayerNormalization) node under ${prefix} with a [${size}] initializer was found for ${param}`,
      );
    }
    this.addVector(param, size, found.r, found.node);
  }

  // --------------------------------------------------------------------------- linears

  /** Finds and maps `${module}.weight` (and returns the node, for the bias). */
  linear(module: string, inF: number, outF: number, conv1d: boolean): OnnxNode | undefined {
    const param = `${module}.weight`;
    const hfShape = conv1d ? [inF, outF] : [outF, inF];
    const base = nodePath(module);
    const exact = [`${base}/MatMul`, `${base}/Gemm`, `${base}/MatMul_Q4`, `${base}/Gemm_Q4`];
    const candidates: OnnxNode[] = [];
    for (const name of exact) {
      const n = this.byName.get(name);
      if (n) candidates.push(n);
    }
    for (const n of this.model.graph.nodes) if (n.name.startsWith(`${base}/`) && !candidates.includes(n)) candidates.push(n);
    for (const n of candidates) {
      if (this.claimed.has(n)) continue;
      const isExact = exact.includes(n.name);
      if (UNSUPPORTED_WEIGHT_OPS.has(n.opType) || (isExact && !WEIGHT_OPS.has(n.opType))) {
        this.unsupportedNode(n, `${n.opType} to ${param}`);
      }
      if (!WEIGHT_OPS.has(n.opType)) continue;
      if (n.opType === 'MatMulNBits') {
        this.q4(param, n, inF, outF, conv1d);
        return n;
      }
      const r = this.resolve(n.inputs[1]);
      if (!r) continue;
      this.denseLinear(param, hfShape, conv1d, n, r);
      return n;
    }
    // Initializers named after the HF parameter, used by a MatMul or Gemm.
    const named = this.byParamName(param);
    if (named) {
      const users = [...(this.consumers.get(named.name) ?? [])];
      for (let i = 0; i < users.length; i++) {
        const u = users[i]!;
        if (u.opType === 'Cast' || u.opType === 'Identity' || u.opType === 'Transpose') {
          users.push(...(this.consumers.get(u.outputs[0] ?? '') ?? []));
          continue;
        }
        if (UNSUPPORTED_WEIGHT_OPS.has(u.opType) || !WEIGHT_OPS.has(u.opType)) this.unsupportedNode(u, `${u.opType} to ${param}`);
        if (u.opType === 'MatMulNBits') continue;
        const r = this.resolve(u.inputs[1]);
        if (r && r.init === named) {
          this.denseLinear(param, hfShape, conv1d, u, r);
          return u;
        }
      }
    }
    throw new ModelFormatError(
      this.source,
      `${param} ${fmt(hfShape)}: no MatMul node ${base}/MatMul (nor Gemm ${base}/Gemm, nor MatMulNBits ${base}/MatMul_Q4) and no initializer "${param}" was found; ${this.firstUnclaimedLinear()}`,
    );
  }

  private denseLinear(param: string, hfShape: number[], conv1d: boolean, node: OnnxNode, r: Resolved): void {
    let transB = false;
    if (node.opType === 'Gemm') {
      const transA = attrNumber(node, 'transA') ?? 0;
      const alpha = attrNumber(node, 'alpha') ?? 1;
      const beta = attrNumber(node, 'beta') ?? 1;
      if (transA !== 0 || alpha !== 1 || (beta !== 1 && node.inputs[2])) {
        throw new UnsupportedModelError(this.source, `Gemm node ${this.label(node)} for ${param} has transA=${transA}, alpha=${alpha}, beta=${beta}; webtune reads Gemm weights with transA=0, alpha=1, beta=1`);
      }
      transB = (attrNumber(node, 'transB') ?? 0) !== 0;
    }
    // The node computes x @ W with W [in, out]; the initializer is W, or W^T when transposed once.
    const storedInOut = r.transposed === transB;
    const [inF, outF] = conv1d ? [hfShape[0]!, hfShape[1]!] : [hfShape[1]!, hfShape[0]!];
    const stored = storedInOut ? [inF, outF] : [outF, inF];
    const layout = storedInOut === conv1d ? 'as-hf' : 'transposed';
    this.addDense(param, hfShape, r, node, stored, layout);
  }

  private q4(param: string, node: OnnxNode, inF: number, outF: number, conv1d: boolean): void {
    const what = `MatMulNBits node ${this.label(node)} for ${param}`;
    const bits = attrNumber(node, 'bits') ?? 4;
    if (bits !== 4) throw new UnsupportedModelError(this.source, `${what} has bits=${bits}; webtune dequantizes only 4-bit MatMulNBits`);
    const K = attrNumber(node, 'K');
    const N = attrNumber(node, 'N');
    const blockSize = attrNumber(node, 'block_size');
    if (K === undefined || N === undefined || blockSize === undefined) {
      throw new ModelFormatError(this.source, `${what} lacks one of its K, N, block_size attributes`);
    }
    if (K !== inF || N !== outF) {
      throw new ModelFormatError(this.source, `${what} has K=${K}, N=${N} (weight [${K}, ${N}]), but the config implies K=${inF}, N=${outF} (weight [${inF}, ${outF}])`);
    }
    if (!Number.isInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
      throw new ModelFormatError(this.source, `${what} has block_size ${blockSize}; MatMulNBits needs a power of two >= 16`);
    }
    if (node.inputs[4]) throw new UnsupportedModelError(this.source, `${what} has a g_idx input (act-order quantization), which webtune does not dequantize`);
    const inits = this.model.graph.initializers;
    const B = inits.get(node.inputs[1] ?? '');
    const scalesR = this.resolve(node.inputs[2]);
    if (!B || !scalesR) {
      throw new ModelFormatError(this.source, `${what} does not take its B and scales inputs ("${node.inputs[1]}", "${node.inputs[2]}") from initializers`);
    }
    const scales = scalesR.init;
    const kBlocks = Math.ceil(K / blockSize);
    const blob = blockSize / 2;
    if (B.dataType !== OnnxDataType.UINT8 || elementCount(B) !== N * kBlocks * blob || B.dims[0] !== N) {
      throw new ModelFormatError(this.source, `${what}: B "${B.name}" is ${dataTypeName(B.dataType)} ${fmt(B.dims)}, but K=${K}, N=${N}, block_size=${blockSize} need UINT8 ${fmt([N, kBlocks, blob])}`);
    }
    this.floatType(scales, `${param} scales`, node);
    if (elementCount(scales) !== N * kBlocks) {
      throw new ModelFormatError(this.source, `${what}: scales "${scales.name}" has shape ${fmt(scales.dims)}, but K=${K}, N=${N}, block_size=${blockSize} need ${fmt([N * kBlocks])}`);
    }
    let zp: OnnxTensor | undefined;
    if (node.inputs[3]) {
      zp = this.resolve(node.inputs[3])?.init;
      if (!zp) throw new ModelFormatError(this.source, `${what} does not take its zero_points input "${node.inputs[3]}" from an initializer`);
      const packed = zp.dataType === OnnxDataType.UINT8;
      if (packed) {
        if (elementCount(zp) !== N * Math.ceil(kBlocks / 2)) {
          throw new ModelFormatError(this.source, `${what}: zero_points "${zp.name}" has shape ${fmt(zp.dims)}, but packed 4-bit zero points need ${fmt([N * Math.ceil(kBlocks / 2)])}`);
        }
      } else {
        this.floatType(zp, `${param} zero points`, node);
        if (elementCount(zp) !== N * kBlocks) {
          throw new ModelFormatError(this.source, `${what}: zero_points "${zp.name}" has shape ${fmt(zp.dims)}, but ${dataTypeName(zp.dataType)} zero points need ${fmt([N * kBlocks])}`);
        }
      }
      this.present(zp);
    }
    this.present(B);
    this.present(scales);
    this.claimed.add(node);
    const { model, externalData } = this;
    const hfShape = conv1d ? [K, N] : [N, K];
    this.entries.set(param, {
      shape: hfShape,
      load: () => dequantizeQ4(tensorBytes(model, B, externalData), tensorToFloat32(model, scales, externalData), zp, { K, N, blockSize, conv1d }, model, externalData),
    });
    if (K % blockSize === 0 && (!zp || allZeroPointsEight(zp, N, kBlocks, model, externalData))) {
      this.fourBit.set(param, {
        blockSize,
        read: () => fourBitWeight(tensorBytes(model, B, externalData), tensorToFloat32(model, scales, externalData), N, K, blockSize),
      });
    }
    this.sources.set(param, {
      initializer: B.name,
      dataType: B.dataType,
      layout: conv1d ? 'transposed' : 'as-hf',
      q4: { scales: scales.name, ...(zp ? { zeroPoints: zp.name } : {}), blockSize, K, N },
      node: node.name,
    });
  }

  bias(module: string, size: number, node: OnnxNode | undefined): void {
    const param = `${module}.bias`;
    if (node) {
      const direct = node.opType === 'Gemm' ? node.inputs[2] : node.opType === 'MatMulNBits' ? node.inputs[5] : undefined;
      const r = direct ? this.resolve(direct) : undefined;
      if (r) {
        this.addVector(param, size, r, node);
        return;
      }
      for (const add of this.consumers.get(node.outputs[0] ?? '') ?? []) {
        if (add.opType !== 'Add') continue;
        for (const i of add.inputs) {
          const ar = this.resolve(i);
          if (ar && elementCount(ar.init) === size) {
            this.addVector(param, size, ar, add);
            return;
          }
        }
      }
    }
    const named = this.byParamName(param);
    if (named) {
      this.addVector(param, size, { init: named, transposed: false }, this.consumerOf(named));
      return;
    }
    throw new ModelFormatError(
      this.source,
      `${param} [${size}] (the config says ${module} has a bias): ${node ? `node ${this.label(node)} has no bias input and no Add after it adds a [${size}] initializer` : 'no node found'}, and there is no initializer "${param}"`,
    );
  }

  lmHeadNode(): { node: OnnxNode; r: Resolved | undefined } | undefined {
    for (const name of ['/lm_head/MatMul', '/lm_head/Gemm', '/lm_head/MatMul_Q4']) {
      const node = this.byName.get(name);
      if (!node) continue;
      if (node.opType === 'MatMulNBits') {
        const init = this.model.graph.initializers.get(node.inputs[1] ?? '');
        return { node, r: init ? { init, transposed: false } : undefined };
      }
      return { node, r: WEIGHT_OPS.has(node.opType) ? this.resolve(node.inputs[1]) : undefined };
    }
    return undefined;
  }
}

function dequantizeQ4(
  B: Uint8Array,
  scales: Float32Array,
  zp: OnnxTensor | undefined,
  shape: { K: number; N: number; blockSize: number; conv1d: boolean },
  model: OnnxModel,
  externalData: ReadonlyMap<string, Uint8Array> | undefined,
): Float32Array {
  const { K, N, blockSize, conv1d } = shape;
  const kBlocks = Math.ceil(K / blockSize);
  const blob = blockSize / 2;
  const zpBytes = zp && zp.dataType === OnnxDataType.UINT8 ? tensorBytes(model, zp, externalData) : undefined;
  const zpFloat = zp && !zpBytes ? tensorToFloat32(model, zp, externalData) : undefined;
  const zpRow = Math.ceil(kBlocks / 2);
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = scales[n * kBlocks + b]!;
      let zero = 8;
      if (zpBytes) {
        const byte = zpBytes[n * zpRow + (b >> 1)]!;
        zero = b & 1 ? byte >> 4 : byte & 0x0f;
      } else if (zpFloat) zero = zpFloat[n * kBlocks + b]!;
      const src = (n * kBlocks + b) * blob;
      const k0 = b * blockSize;
      const kEnd = Math.min(K, k0 + blockSize);
      for (let k = k0; k < kEnd; k++) {
        const j = k - k0;
        const byte = B[src + (j >> 1)]!;
        const q = j & 1 ? byte >> 4 : byte & 0x0f;
        const w = (q - zero) * scale;
        // HF Linear [out, in] = [N, K]; GPT-2 Conv1D [in, out] = [K, N].
        out[conv1d ? k * N + n : n * K + k] = w;
      }
    }
  }
  return out;
}

/** Zero points that are all 8 (MatMulNBits' default) change nothing: the symmetric codebook applies. */
function allZeroPointsEight(zp: OnnxTensor, N: number, kBlocks: number, model: OnnxModel, externalData: ReadonlyMap<string, Uint8Array> | undefined): boolean {
  if (zp.dataType !== OnnxDataType.UINT8) return tensorToFloat32(model, zp, externalData).every((v) => v === 8);
  // Packed 4-bit: ceil(kBlocks / 2) bytes per row, block 2j in the low nibble (an odd row's last high nibble is padding).
  const bytes = tensorBytes(model, zp, externalData);
  const row = Math.ceil(kBlocks / 2);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const byte = bytes[n * row + (b >> 1)]!;
      if ((b & 1 ? byte >> 4 : byte & 0x0f) !== 8) return false;
    }
  }
  return true;
}

/**
 * A MatMulNBits weight (K a multiple of the block size, zero point 8) in the form the GPU's 4-bit
 * kernels decode as it is: codebook 'int4' ((q - 8) / 8) with block scale 8s, which gives
 * (q - 8) * s exactly; B's row-major [N, K/block, block/2] bytes are the [N, K] codes two per
 * byte, with the first element in the LOW nibble, so each byte's nibbles are swapped into the
 * kernels' high-nibble-first order. Shape [N, K] = [out, in] (for GPT-2's Conv1D too).
 */
function fourBitWeight(B: Uint8Array, scales: Float32Array, N: number, K: number, blockSize: number): NF4Quantized {
  const packed = new Uint8Array(B.length);
  for (let i = 0; i < B.length; i++) packed[i] = ((B[i]! & 0x0f) << 4) | (B[i]! >> 4);
  const absmax = scales.map((s) => 8 * s);
  return { shape: [N, K], blockSize, packed, scales: { doubleQuant: false, absmax }, codebook: 'int4' };
}

/**
 * Maps the weights of a parsed ONNX decoder export (Optimum / transformers.js layout) to the HF
 * parameter names the GPU upload reads. `config` is the model's config.json (parseModelConfig);
 * `externalData` holds the external data files by their `location` (e.g. "model.onnx_data").
 */
export function onnxWeights(model: OnnxModel, config: ModelConfig, externalData?: ReadonlyMap<string, Uint8Array>): OnnxWeightMap {
  if (!model || !model.graph) throw new InvalidArgumentError('onnxWeights needs a model from parseOnnx().');
  const llama = config.architecture === 'llama' && LLAMA_FAMILY.has(config.modelType);
  const gpt2 = config.architecture === 'gpt2' && config.modelType === 'gpt2';
  if (!llama && !gpt2) {
    throw new UnsupportedModelError(
      model.source,
      `model_type "${config.modelType}" is not supported for ONNX import; webtune maps Llama-family (llama, qwen2, mistral) and gpt2 exports`,
    );
  }
  const m = new Mapper(model, config, externalData);
  const d = config.hiddenSize;
  const layerPrefix = (l: number) => (gpt2 ? `/transformer/h.${l}/` : `/model/layers.${l}/`);
  const extra = model.graph.nodes.find((n) => n.name.startsWith(layerPrefix(config.numLayers)));
  if (extra) {
    throw new ModelFormatError(
      model.source,
      `the config has ${config.numLayers} layer${config.numLayers === 1 ? '' : 's'}, but the graph has node "${extra.name}" of layer ${config.numLayers}; config.json does not belong to this model`,
    );
  }

  if (gpt2) {
    m.embedding('transformer.wte.weight', [config.vocabSize, d], '/transformer/wte/Gather');
    m.embedding('transformer.wpe.weight', [config.maxPositions, d], '/transformer/wpe/Gather');
  } else {
    m.embedding('model.embed_tokens.weight', [config.vocabSize, d], '/model/embed_tokens/Gather');
  }
  for (let l = 0; l < config.numLayers; l++) {
    const prefix = gpt2 ? `transformer.h.${l}` : `model.layers.${l}`;
    for (const norm of gpt2 ? ['ln_1', 'ln_2'] : ['input_layernorm', 'post_attention_layernorm']) {
      m.norm(`${prefix}.${norm}`, 'weight');
      if (gpt2) m.norm(`${prefix}.${norm}`, 'bias');
    }
    for (const linear of LINEAR_MODULES[config.architecture]) {
      const module = modulePath(config.architecture, l, linear);
      const { inFeatures, outFeatures, conv1d } = linearShape(config, linear);
      const node = m.linear(module, inFeatures, outFeatures, conv1d);
      if (linearHasBias(config, linear)) m.bias(module, outFeatures, node);
    }
  }
  const finalNorm = gpt2 ? 'transformer.ln_f' : 'model.norm';
  m.norm(finalNorm, 'weight');
  if (gpt2) m.norm(finalNorm, 'bias');

  let tiedLmHeadCopy: string | undefined;
  if (config.tieWordEmbeddings) {
    const head = m.lmHeadNode();
    const embed = m.sources.get(gpt2 ? 'transformer.wte.weight' : 'model.embed_tokens.weight')!.initializer;
    if (head?.r && head.r.init.name !== embed) tiedLmHeadCopy = head.r.init.name;
  } else {
    m.linear('lm_head', d, config.vocabSize, false);
  }

  const { entries, fourBit } = m;
  const reader: WeightReader & { names(): string[] } = {
    has: (name) => entries.has(name),
    read: (name) => {
      const e = entries.get(name);
      if (!e) throw new ModelFileMissingError(name, `${model.source} has no weight "${name}" (it maps ${entries.size} parameters of a ${config.modelType} model)`);
      return { data: e.load(), shape: e.shape };
    },
    names: () => [...entries.keys()],
    fourBit: (name) => fourBit.get(name),
  };
  return { reader, sources: m.sources, ...(tiedLmHeadCopy !== undefined ? { tiedLmHeadCopy } : {}) };
}
