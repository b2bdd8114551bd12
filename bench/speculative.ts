// Speculative decoding against plain decoding, side by side in one run: the same requests, greedy,
// runs alternating between the two engines so machine noise hits both alike; the fastest run of each
// is reported, with the acceptance rate, mean accepted length (tokens per verification, the runner's
// own included) and where a speculative step's time goes: the target's forward pass over the
// verification rows against a plain step's, and the proposer's (a draft model's passes). Not a test:
// nothing here asserts.
//
//   npx tsx bench/speculative.ts [--model FILE] [--method ngram|draft] [--draft-model FILE]
//        [--draft-dtype q4_0|q8_0] [--seqs 1,32] [--tokens 256] [--k 4] [--reps 3] [--pass-costs]
//
// Default model: the stories260K checkpoint in ../shared/models (a real trained model), its prompt a
// lone BOS — the story it writes repeats itself, which is where prompt lookup pays. A GGUF model
// can be given instead (e.g. models/110m-f32.gguf), and a draft model for it: a smaller model with the
// same vocabulary (--draft-model) or the model's own Q4_0 copy (--draft-dtype q4_0). --pass-costs
// first times single forward passes (one sequence, the target at 1 and k + 1 rows, the draft at 1).
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { LLM, type LoadOptions } from '../src/llm.js';
import type { StepRecord } from '../src/engine/step-trace.js';
import type { SpeculativeConfig } from '../src/engine/spec/speculative-config.js';
import { isRequantDtype } from '../src/model/quantize-weights.js';
import { loadModel } from '../src/model/loaders/index.js';
import { getKernels } from '../src/model/kernels/index.js';
import { TransformerModel } from '../src/model/transformer.js';
import { loadDraftModel } from '../src/engine/spec/create-proposer.js';
import { sequenceRowsMs } from './forward-timing.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: resolve('..', 'shared', 'models', 'stories260K', 'stories260K.bin') },
    method: { type: 'string', default: 'ngram' },
    'draft-model': { type: 'string' },
    'draft-dtype': { type: 'string' },
    seqs: { type: 'string', default: '1,32' },
    tokens: { type: 'string', default: '256' },
    k: { type: 'string', default: '4' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'pass-costs': { type: 'boolean', default: false },
  },
});
const seqsList = values.seqs!.split(',').map(Number);
const maxTokens = Number(values.tokens);
const k = Number(values.k);
const reps = Number(values.reps);
const threads = Number(values.threads);
const dtype = values['draft-dtype'];
if (values.method !== 'ngram' && values.method !== 'draft') throw new Error(`--method must be ngram or draft, got ${values.method}`);
if (dtype !== undefined && !isRequantDtype(dtype)) throw new Error(`--draft-dtype must be q4_0 or q8_0, got ${dtype}`);
const speculative: SpeculativeConfig =
  values.method === 'ngram'
    ? { method: 'ngram', numTokens: k }
    : { method: 'draft', numTokens: k, ...(values['draft-model'] ? { model: values['draft-model'] } : {}), ...(dtype ? { dtype } : {}) };
const draftName = values.method === 'ngram' ? 'prompt lookup' : `draft ${values['draft-model'] ?? 'self'}${dtype ? ` as ${dtype}` : ''}`;

if (values['pass-costs']) await passCosts();

const base: LoadOptions = { threads, maxNumSeqs: 64 };
const plain = await LLM.load(values.model!, base);
const spec = await LLM.load(values.model!, { ...base, speculative, speculativeDisableBatchSize: 8 });
const bos = plain.tokenizer?.bosId ?? 1;

console.log(`# Speculative decoding (${draftName}, k=${k}) vs plain, ${values.model}, ${threads} threads, ${maxTokens} tokens per request, greedy\n`);
console.log('| sequences | plain tok/s | speculative tok/s | speedup | acceptance rate | mean accepted length | plain step ms | verification step ms | proposing ms/step | identical tokens |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
for (const n of seqsList) {
  // Prompts differ per request (a second token), so requests do not share one cached prompt.
  const prompts = Array.from({ length: n }, (_, i) => [bos, 2 + (i % 50)]);
  const params = { maxTokens, temperature: 0, ignoreEos: true };
  const best = { plain: Infinity, spec: Infinity };
  const steps = { plain: [] as StepRecord[], spec: [] as StepRecord[] };
  const last: { plain?: string; spec?: string } = {};
  let same = true;
  const before = spec.engine.stats();
  for (let r = 0; r < reps; r++) {
    for (const which of ['plain', 'spec'] as const) {
      const llm = which === 'plain' ? plain : spec;
      const off = llm.engine.onStep((s) => steps[which].push(s));
      const t0 = performance.now();
      const out = await llm.generate(prompts, params);
      best[which] = Math.min(best[which], performance.now() - t0);
      off();
      last[which] = JSON.stringify(out.map((o) => o.tokenIds));
    }
    same &&= last.spec === last.plain;
  }
  const after = spec.engine.stats();
  const drafts = after.specDrafts - before.specDrafts;
  const proposed = after.specDraftTokens - before.specDraftTokens;
  const accepted = after.specAcceptedTokens - before.specAcceptedTokens;
  const tps = (ms: number) => (n * maxTokens) / (ms / 1000);
  const mean = (xs: number[]) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1) : '–');
  // Decode steps only (a step with prefill rows is another cost), each engine's own.
  const decode = (xs: StepRecord[]) => xs.filter((s) => s.numPrefillTokens === 0);
  const verifying = decode(steps.spec).filter((s) => (s.numDraftTokens ?? 0) > 0);
  console.log(
    `| ${n} | ${tps(best.plain).toFixed(1)} | ${tps(best.spec).toFixed(1)} | ${(best.plain / best.spec).toFixed(2)}x | ` +
      `${proposed ? ((100 * accepted) / proposed).toFixed(1) + '%' : '–'} | ${drafts ? (1 + accepted / drafts).toFixed(2) : '–'} | ` +
      `${mean(decode(steps.plain).map((s) => s.forwardMs))} | ${mean(verifying.map((s) => s.forwardMs))} | ` +
      `${mean(decode(steps.spec).flatMap((s) => (s.proposeMs !== undefined ? [s.proposeMs] : [])))} | ${same ? 'yes' : 'NO'} |`,
  );
}
await plain.close();
await spec.close();

/** Single forward passes of one sequence at 256 cached positions: the target at 1 and k + 1 rows, the draft at 1 and 2. */
async function passCosts(): Promise<void> {
  const kernels = await getKernels('auto', { threads });
  const target = await loadModel(values.model!);
  const tm = new TransformerModel(target.config, target.weights, kernels);
  const rows = [1, 2, 3, k + 1].filter((r, i, a) => a.indexOf(r) === i);
  console.log(`# One sequence's forward pass at 256 cached positions (best of 8), ${kernels.name}\n`);
  console.log('| model | ' + rows.map((r) => `${r} row${r > 1 ? 's' : ''} ms`).join(' | ') + ' |');
  console.log('|---|' + rows.map(() => '---:').join('|') + '|');
  const line = (name: string, m: TransformerModel) => console.log(`| ${name} | ${rows.map((r) => sequenceRowsMs(m, r, 256).toFixed(2)).join(' | ')} |`);
  line(`target ${values.model}`, tm);
  if (speculative.method === 'draft') {
    const d = await loadDraftModel(speculative, target);
    line(draftName, new TransformerModel(d.config, d.weights, kernels));
  }
  console.log('');
}
