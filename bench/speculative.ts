// Speculative decoding (prompt lookup) against plain decoding, side by side in one run: the same
// requests, greedy, runs alternating between the two engines so machine noise hits both alike; the
// fastest run of each is reported, with the acceptance rate and mean accepted length (tokens per
// verification, the runner's own included). Not a test: nothing here asserts.
//
//   npx tsx bench/speculative.ts [--model FILE] [--seqs 1,32] [--tokens 256] [--k 4] [--reps 3]
//
// Default model: the stories260K checkpoint in ../shared/models (a real trained model), its prompt a
// lone BOS — the story it writes repeats itself, which is where prompt lookup pays. A GGUF model
// can be given instead (e.g. models/110m-f32.gguf) to see the cost where proposals rarely hit.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { LLM } from '../src/llm.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: resolve('..', 'shared', 'models', 'stories260K', 'stories260K.bin') },
    seqs: { type: 'string', default: '1,32' },
    tokens: { type: 'string', default: '256' },
    k: { type: 'string', default: '4' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
  },
});
const seqsList = values.seqs!.split(',').map(Number);
const maxTokens = Number(values.tokens);
const k = Number(values.k);
const reps = Number(values.reps);
const threads = Number(values.threads);

const plain = await LLM.load(values.model!, { threads, maxNumSeqs: 64 });
const spec = await LLM.load(values.model!, { threads, maxNumSeqs: 64, speculative: { method: 'ngram', numTokens: k }, speculativeDisableBatchSize: 8 });
const bos = plain.tokenizer?.bosId ?? 1;

console.log(`# Speculative decoding (prompt lookup, k=${k}) vs plain, ${values.model}, ${threads} threads, ${maxTokens} tokens per request, greedy\n`);
console.log('| sequences | plain tok/s | speculative tok/s | speedup | acceptance rate | mean accepted length | identical tokens |');
console.log('|---:|---:|---:|---:|---:|---:|---|');
for (const n of seqsList) {
  // Prompts differ per request (a second token), so requests do not share one cached prompt.
  const prompts = Array.from({ length: n }, (_, i) => [bos, 2 + (i % 50)]);
  const params = { maxTokens, temperature: 0, ignoreEos: true };
  let best = { plain: Infinity, spec: Infinity };
  let same = true;
  const before = spec.engine.stats();
  for (let r = 0; r < reps; r++) {
    for (const which of ['plain', 'spec'] as const) {
      const llm = which === 'plain' ? plain : spec;
      const t0 = performance.now();
      const out = await llm.generate(prompts, params);
      const ms = performance.now() - t0;
      best[which] = Math.min(best[which], ms);
      if (which === 'spec') (globalThis as { lastSpec?: string }).lastSpec = JSON.stringify(out.map((o) => o.tokenIds));
      else (globalThis as { lastPlain?: string }).lastPlain = JSON.stringify(out.map((o) => o.tokenIds));
    }
    same &&= (globalThis as { lastSpec?: string }).lastSpec === (globalThis as { lastPlain?: string }).lastPlain;
  }
  const after = spec.engine.stats();
  const drafts = after.specDrafts - before.specDrafts;
  const proposed = after.specDraftTokens - before.specDraftTokens;
  const accepted = after.specAcceptedTokens - before.specAcceptedTokens;
  const tps = (ms: number) => (n * maxTokens) / (ms / 1000);
  console.log(
    `| ${n} | ${tps(best.plain).toFixed(1)} | ${tps(best.spec).toFixed(1)} | ${(best.plain / best.spec).toFixed(2)}x | ` +
      `${proposed ? ((100 * accepted) / proposed).toFixed(1) + '%' : '–'} | ${drafts ? (1 + accepted / drafts).toFixed(2) : '–'} | ${same ? 'yes' : 'NO'} |`,
  );
}
await plain.close();
await spec.close();
