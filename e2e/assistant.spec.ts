/**
 * The built demo's Assistant mode end to end on the bundled model (vite build + preview, as
 * e2e/demo.spec.ts): the sample Q&A as conversations, DataInfo in the data panel, the base model's
 * loss on the held-out and the training answers before training, a run with held-out evaluation
 * every few steps (plotted beside the training loss), the adapter's loss on the same answers after
 * it, and one question answered by the base model and the adapter side by side. Then bad input: a
 * broken JSONL line is named by its line number, and the page goes on to prepare valid data.
 */
import { readFileSync } from 'node:fs';
import { expect, test, type Page, type TestInfo } from '@playwright/test';
import { shot, setField } from './demo-page.js';
import { DEMO_URL } from './servers.js';

test.use({ baseURL: DEMO_URL });

async function loadBundledInAssistantMode(page: Page) {
  await page.goto('/');
  await expect(page.locator('#adapter table')).toContainText('shader-f16');
  await page.selectOption('#model-source', 'bundled');
  await page.click('#load-model');
  await expect(page.locator('#model-info')).toContainText('Loaded bundled demo model: llama', { timeout: 60_000 });
  await page.check('input[name="mode"][value="assistant"]');
  await expect(page.locator('#assistant-mode')).toBeVisible();
  await expect(page.locator('#text-mode')).toBeHidden();
  await expect(page.locator('#chat-panel')).toBeVisible();
  await expect(page.locator('#generate-panel')).toBeHidden();
}

const loss = async (page: Page, id: string) => Number(await page.locator(`#${id}`).getAttribute('data-loss'));

const SAMPLE = readFileSync(new URL('../demo-app/src/assistant-sample.jsonl', import.meta.url), 'utf8')
  .trim().split('\n').map((line) => JSON.parse(line) as { messages: Array<{ role: string; content: string }> });
const answerOf = (question: string) => SAMPLE.find((r) => r.messages[0]!.content === question)!.messages[1]!.content;
/** Words of four letters or more, lower-cased, but for the few common ones the sample's answers use. */
const COMMON = new Set(['with', 'never', 'years', 'open']);
const words = (s: string) => new Set((s.toLowerCase().match(/[a-z']{4,}/g) ?? []).filter((w) => !COMMON.has(w)));
/** A question of the sample that is not among the three held out (prepareData's seeded choice, lines 3, 8 and 13: DataInfo.heldOutLines). */
const QUESTION = 'Who cooks on the Kestrel?';

test('Assistant mode: the sample Q&A trains an adapter whose answers the held-out and training answers favour, and it answers differently from the base model', async ({ page }, testInfo) => {
  // About 1 minute of training on an idle 2-core machine, 2 to 3 under load.
  test.setTimeout(480_000);
  await loadBundledInAssistantMode(page);
  // 30 steps of 4 conversations (about 9 passes over the 13 training examples) with LoRA on every
  // linear layer; 48 tokens hold the longest sample conversation (48 tokens) without truncation.
  const STEPS = 30;
  await setField(page, 'steps', String(STEPS));
  await setField(page, 'batch', '4');
  await setField(page, 'lr', '5e-3');
  await setField(page, 'rank', '8');
  await setField(page, 'seq', '48');
  for (const box of await page.locator('#targets input').all()) await box.setChecked(true);
  await page.locator('#targets').dispatchEvent('change');
  await setField(page, 'eval-every', '5');

  // The sample: 16 conversations, a fifth held out; DataInfo in the panel; the base model scored.
  await page.click('#use-qa-sample');
  await expect(page.locator('#eval-train-base')).toHaveAttribute('data-loss', /\d/, { timeout: 60_000 });
  await expect(page.locator('#data-info')).toHaveAttribute('data-examples', '16');
  await expect(page.locator('#data-info')).toHaveAttribute('data-held-out', '3');
  await expect(page.locator('#data-info')).toContainText('16 conversations, 13 for training and 3 held out');
  await expect(page.locator('#data-details')).toContainText('Learned tokens');
  await expect(page.locator('#data-details')).toContainText(/Padding.*\d+%/);
  await expect(page.locator('#data-details')).toHaveAttribute('data-skipped', '0');
  await expect(page.locator('#data-details')).toContainText(/Truncated\s*none/);
  await expect(page.locator('#data-details')).toContainText('tokenizer_config.json');
  await expect(page.locator('#data-msg')).toBeEmpty();
  await expect(page.locator('#qa-text')).toHaveValue(/Mira Halloway/);
  const base = { heldOut: await loss(page, 'eval-heldout-base'), train: await loss(page, 'eval-train-base') };
  expect(base.heldOut).toBeGreaterThan(0);
  expect(base.train).toBeGreaterThan(0);
  await expect(page.locator('#memory .badge')).toHaveText('fits');

  // Train with held-out evaluation every 5 steps.
  const started = Date.now();
  await expect(page.locator('#train')).toBeEnabled();
  await page.click('#train');
  await expect(page.locator('#train-info')).toContainText(`Finished ${STEPS} steps`, { timeout: 360_000 });
  const trainSeconds = (Date.now() - started) / 1000;
  await expect(page.locator('#eval-train-adapter')).toHaveAttribute('data-loss', /\d/, { timeout: 60_000 });
  expect(Number(await page.locator('#chart').getAttribute('data-eval-points'))).toBe(STEPS / 5);
  await expect(page.locator('#eval-history')).toContainText('step 5:');
  await expect(page.locator('#eval-history')).toContainText(`step ${STEPS}:`);
  const after = { heldOut: await loss(page, 'eval-heldout-adapter'), train: await loss(page, 'eval-train-adapter') };
  console.log(`assistant e2e: ${STEPS} steps in ${trainSeconds.toFixed(1)} s; answers' loss base → adapter: ` +
    `held-out ${base.heldOut.toFixed(3)} → ${after.heldOut.toFixed(3)}, training ${base.train.toFixed(3)} → ${after.train.toFixed(3)}`);
  await testInfo.attach('losses', { body: JSON.stringify({ steps: STEPS, trainSeconds, base, after }, null, 2), contentType: 'application/json' });
  // The adapter makes the unseen answers likelier, and the trained ones much likelier.
  expect(after.heldOut).toBeLessThan(base.heldOut);
  expect(after.train).toBeLessThan(base.train - 0.5);
  await expect(page.locator('#eval-train-adapter .better')).toHaveCount(1);
  await shot(page, testInfo, 'assistant-01-trained');

  // One trained question to both sides. A 3.4M-parameter model does not learn every answer word
  // for word in 30 steps, so the test asks for what holds: the adapter answers, differently from
  // the base model, in the words of the crew's answers (names, food, the ship), which the base model
  // (Moby-Dick) never uses; whether it repeats this question's own answer is logged.
  const vocabulary = new Set(SAMPLE.flatMap((r) => [...words(r.messages[1]!.content)]));
  await page.fill('#question', QUESTION);
  await page.click('#ask');
  await expect(page.locator('#answer-adapter')).toHaveAttribute('data-answer', /./, { timeout: 60_000 });
  await expect(page.locator('#ask')).toBeEnabled();
  const baseAnswer = (await page.locator('#answer-base').getAttribute('data-answer'))!;
  const adapterAnswer = (await page.locator('#answer-adapter').getAttribute('data-answer'))!;
  console.log(`assistant e2e: Q: ${QUESTION}\n  base:    ${JSON.stringify(baseAnswer)}\n  adapter: ${JSON.stringify(adapterAnswer)}`);
  expect(adapterAnswer.trim()).not.toBe('');
  expect(adapterAnswer.trim()).not.toBe(baseAnswer.trim());
  const shared = [...words(adapterAnswer)].filter((w) => vocabulary.has(w));
  const own = [...words(adapterAnswer)].filter((w) => words(answerOf(QUESTION)).has(w));
  console.log(`assistant e2e: words of the sample's answers in the adapter's answer: ${shared.join(', ') || 'none'}; of this question's answer (${JSON.stringify(answerOf(QUESTION))}): ${own.join(', ') || 'none'}`);
  expect(shared.length).toBeGreaterThan(0);
  await expect(page.locator('#answer-adapter .q')).toContainText(QUESTION);
  await shot(page, testInfo, 'assistant-02-chat');
});

test('Assistant mode: a broken JSONL line is named by its line number, and the page prepares valid data afterwards', async ({ page }, testInfo) => {
  await loadBundledInAssistantMode(page);
  const good = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });
  const broken = [
    good('Who steers the Kestrel?', 'Jonah Reed.'),
    good('Who cooks?', 'Old Bartholomew.'),
    '{"messages": [{"role": "user", "content": "Who mends the sails?"}, {"role": "assistant", "content": "Agnes Pike."}',
    good('What is the cat called?', 'Pepper.'),
  ].join('\n');
  await page.fill('#qa-text', broken);
  await page.click('#use-qa');
  await expect(page.locator('#data-msg')).toContainText('line 3', { timeout: 60_000 });
  await expect(page.locator('#data-msg')).toHaveClass(/error/);
  await expect(page.locator('#train')).toBeDisabled();
  await shot(page, testInfo, 'assistant-03-bad-line');

  // Q:/A: text: a question without its answer is named by the line it starts on.
  await page.fill('#qa-text', 'Q: Who steers?\nA: Jonah Reed.\n\nQ: Who cooks?\n\nQ: Who mends the sails?\nA: Agnes Pike.');
  await page.click('#use-qa');
  await expect(page.locator('#data-msg')).toContainText('line 4');
  await expect(page.locator('#data-msg')).toContainText('no answer');

  // With "skip", the broken line is listed and the rest prepares.
  await page.check('#qa-skip');
  await page.fill('#qa-text', broken);
  await page.click('#use-qa');
  await expect(page.locator('#data-details')).toHaveAttribute('data-skipped', '1', { timeout: 60_000 });
  await expect(page.locator('#data-details')).toContainText(/line 3: not valid JSON/);
  await expect(page.locator('#data-info')).toHaveAttribute('data-examples', '3');
  await expect(page.locator('#data-msg')).toBeEmpty();
  await page.uncheck('#qa-skip');

  // Valid data prepares, and the page is ready to train.
  await page.click('#use-qa-sample');
  await expect(page.locator('#eval-train-base')).toHaveAttribute('data-loss', /\d/, { timeout: 60_000 });
  await expect(page.locator('#data-info')).toHaveAttribute('data-examples', '16');
  await expect(page.locator('#data-msg')).toBeEmpty();
  await expect(page.locator('#train')).toBeEnabled();
});
