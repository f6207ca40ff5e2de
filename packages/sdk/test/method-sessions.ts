/** The tiny Llama in a TrainerSession with two Moby-Dick chapters prepared: the method suites' starting point. */
import { createNodeGpu } from '@webtune/gpu/node';
import { MemoryCheckpointStore } from '@webtune/trainer';
import { nodeDirectorySource } from '../../model/src/node.js';
import { FIXTURES } from '../../model/test/tiny-models.js';
import { chapter } from '../../trainer/test/corpus.js';
import { TrainerSession } from '../src/index.js';

export async function sha(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest('SHA-256', bytes as unknown as ArrayBuffer)).toString('hex');
}

/** A fresh device and session over `store` (a new one by default; pass one to resume from its checkpoints). */
export async function ready(store = new MemoryCheckpointStore()): Promise<{ session: TrainerSession; store: MemoryCheckpointStore }> {
  const session = new TrainerSession({ gpu: await createNodeGpu(), checkpoints: store });
  await session.loadModel(nodeDirectorySource(`${FIXTURES}models/tiny-llama`));
  await session.prepareData({ texts: [chapter(1), chapter(2)] }, { seqLen: 32, heldOut: 0.1 });
  return { session, store };
}
