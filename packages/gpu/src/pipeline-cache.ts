/**
 * Compiles WGSL once per (kernel, element type, override constants) and keeps the pipeline.
 * Shaders are plain files under shaders/ (imported as text); a kernel may prepend shared
 * snippets from shaders/lib/. The element type is chosen by a short prelude
 * (`alias elem = f32;` or `enable f16; alias elem = f16;`, plus any `enable` the kernel
 * declares) so one file serves both dtypes,
 * and compiler messages are mapped back to the file and line they came from.
 */
import { InvalidArgumentError, ShaderCompileError, type ShaderMessage } from '@webtune/errors';
import type { GpuFeatures } from './device.js';

export interface ShaderFile {
  /** Path within @webtune/gpu/src, used in error messages (e.g. "shaders/matmul.wgsl"). */
  path: string;
  source: string;
}

/** What each binding of a kernel is, in binding order (group 0). */
export type BindingKind = 'read' | 'read-write' | 'uniform';

export interface KernelDefinition {
  name: string;
  /** Snippets first, the kernel's own file last. */
  files: ShaderFile[];
  bindings: BindingKind[];
  entryPoint?: string;
  /** WGSL extensions beyond f16 the kernel needs; the device must have the matching feature. */
  enables?: 'subgroups'[];
}

export type ElementType = 'f32' | 'f16';
export type OverrideConstants = Record<string, number | boolean>;

export interface CompiledKernel {
  definition: KernelDefinition;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  constants: Readonly<OverrideConstants>;
}

function prelude(elem: ElementType, enables: readonly string[]): string {
  const directives = [...(elem === 'f16' ? ['f16'] : []), ...enables].map((e) => `enable ${e};\n`).join('');
  return `${directives}alias elem = ${elem};\n`;
}

interface Segment {
  path: string;
  firstLine: number; // 1-based line in the assembled source
  lines: number;
}

function assemble(definition: KernelDefinition, elem: ElementType): { code: string; segments: Segment[] } {
  const head = prelude(elem, definition.enables ?? []);
  const segments: Segment[] = [{ path: `<prelude ${elem}>`, firstLine: 1, lines: head.split('\n').length - 1 }];
  let code = head;
  let line = segments[0]!.lines + 1;
  for (const file of definition.files) {
    const text = file.source.endsWith('\n') ? file.source : `${file.source}\n`;
    const lines = text.split('\n').length - 1;
    segments.push({ path: file.path, firstLine: line, lines });
    code += text;
    line += lines;
  }
  return { code, segments };
}

function locate(segments: Segment[], line: number): { file: string; line: number } {
  for (const s of segments) {
    if (line >= s.firstLine && line < s.firstLine + s.lines) return { file: s.path, line: line - s.firstLine + 1 };
  }
  return { file: segments[segments.length - 1]!.path, line };
}

export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<CompiledKernel>>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();

  constructor(
    private readonly device: GPUDevice,
    private readonly features: GpuFeatures,
  ) {}

  get size(): number {
    return this.pipelines.size;
  }

  /** The pipeline for `definition` specialised by `elem` and `constants`, compiled on first use. */
  get(definition: KernelDefinition, elem: ElementType, constants: OverrideConstants = {}): Promise<CompiledKernel> {
    if (elem === 'f16' && !this.features.shaderF16) {
      throw new InvalidArgumentError(
        `Kernel ${definition.name} was asked for f16 but this device has no 'shader-f16' feature; use dtype 'f32'.`,
      );
    }
    if (definition.enables?.includes('subgroups') && !this.features.subgroups) {
      throw new InvalidArgumentError(`Kernel ${definition.name} needs the 'subgroups' feature, which this device does not have.`);
    }
    const key = `${definition.name}|${elem}|${JSON.stringify(Object.entries(constants).sort())}`;
    let entry = this.pipelines.get(key);
    if (!entry) {
      entry = this.compile(definition, elem, constants);
      // A failed compile is not cached, so a fixed input can be retried.
      entry.catch(() => this.pipelines.delete(key));
      this.pipelines.set(key, entry);
    }
    return entry;
  }

  private layoutFor(definition: KernelDefinition): GPUBindGroupLayout {
    let layout = this.layouts.get(definition.name);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: `${definition.name} bind group layout`,
        entries: definition.bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(definition.name, layout);
    }
    return layout;
  }

  private async compile(definition: KernelDefinition, elem: ElementType, constants: OverrideConstants): Promise<CompiledKernel> {
    const { code, segments } = assemble(definition, elem);
    const main = definition.files[definition.files.length - 1]!.path;
    const module = this.device.createShaderModule({ label: `${definition.name} (${elem})`, code });
    const info = await module.getCompilationInfo();
    const messages: ShaderMessage[] = info.messages.map((m) => ({
      type: m.type,
      ...locate(segments, m.lineNum),
      column: m.linePos,
      message: m.message,
    }));
    if (messages.some((m) => m.type === 'error')) throw new ShaderCompileError(main, messages);

    const layout = this.layoutFor(definition);
    this.device.pushErrorScope('validation');
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.device.createComputePipelineAsync({
        label: `${definition.name} (${elem}) ${JSON.stringify(constants)}`,
        layout: this.device.createPipelineLayout({ label: `${definition.name} layout`, bindGroupLayouts: [layout] }),
        compute: {
          module,
          entryPoint: definition.entryPoint ?? 'main',
          // The API takes numbers only; WGSL bool overrides read 0 as false.
          constants: Object.fromEntries(Object.entries(constants).map(([k, v]) => [k, Number(v)])),
        },
      });
    } catch (cause) {
      await this.device.popErrorScope();
      throw new ShaderCompileError(main, messages, `pipeline creation failed: ${(cause as Error).message}`);
    }
    const error = await this.device.popErrorScope();
    if (error) throw new ShaderCompileError(main, messages, `pipeline creation failed: ${error.message}`);
    return { definition, pipeline, layout, constants: Object.freeze({ ...constants }) };
  }
}
