/**
 * webtune/node: what Node needs to train: a WebGPU entry point from Dawn (the `webgpu` package,
 * installed next to webtune) and model folders read from disk.
 *
 * @example
 * ```js
 * import { createTrainer } from 'webtune';
 * import { createNodeGpu, nodeDirectorySource } from 'webtune/node';
 * const trainer = await createTrainer({ inline: true, gpu: await createNodeGpu() });
 * await trainer.loadModel(nodeDirectorySource('./my-model'));
 * ```
 * @packageDocumentation
 */
/// <reference types="@webgpu/types" preserve="true" />
export { createNodeGpu } from '@webtune/gpu/node';
export { nodeDirectorySource, nodeDirectoryCache } from '@webtune/model/node';
