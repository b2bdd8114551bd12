// How often a draft model's greedy token is the target's, and why: the target generates greedily from
// a few prompts, then both models read the same text (teacher forcing) and, at every generated
// position, we count argmax agreement (the acceptance rate greedy drafting can reach at k = 1) and
// compare the target's margin between its top two logits with how far the draft's logits are from the
// target's. Random-weight models have flat logits: where the margin is smaller than the draft's error,
// the argmax flips. Not a test: nothing here asserts.
//
//   npx tsx bench/draft-agreement.ts --model models/110m-f32.gguf [--draft-model FILE] [--draft-dtype q4_0|q8_0] [--tokens 64]
import { parseArgs } from 'node:util';
import { LLM } from '../src/llm.js';
import { loadModel } from '../src/model/loaders/index.js';
import { getKernels } from '../src/model/kernels/index.js';
import { TransformerModel } from '../src/model/transformer.js';
import { createKvStorage } from '../src/model/kv-storage.js';
import { buildForwardBatch } from '../src/engine/forward-batch.js';
import { loadDraftModel } from '../src/engine/spec/create-proposer.js';
import { isRequantDtype } from '../src/model/quantize-weights.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/110m-f32.gguf' },
    'draft-model': { type: 'string' },
    'draft-dtype': { type: 'string' },
    tokens: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
  },
});
const dtype = values['draft-dtype'];
if (dtype !== undefined && !isRequantDtype(dtype)) throw new Error(`--draft-dtype must be q4_0 or q8_0, got ${dtype}`);
const numTokens = Number(values.tokens);
const threads = Number(values.threads);

const llm = await LLM.load(values.model!, { threads, inProcess: true });
const bos = llm.tokenizer?.bosId ?? 1;
const prompts = [5, 77, 300, 1234].map((t) => [bos, t % llm.config.vocabSize]);
const texts = (await llm.generate(prompts, { maxTokens: numTokens, temperature: 0, ignoreEos: true })).map((r, i) => [...prompts[i]!, ...r.tokenIds]);
await llm.close();

const kernels = await getKernels('auto', { threads });
const target = await loadModel(values.model!);
const draft = await loadDraftModel({ method: 'draft', numTokens: 1, ...(values['draft-model'] ? { model: values['draft-model'] } : {}), ...(dtype ? { dtype } : {}) }, target);
const tm = new TransformerModel(target.config, target.weights, kernels);
const dm = new TransformerModel(draft.config, draft.weights, kernels);
const V = target.config.vocabSize;

/** Logits at every position of `tokens`, one prefill pass. */
function logitsAll(m: TransformerModel, tokens: number[]): Float32Array {
  const blocks = Math.ceil(tokens.length / 16);
  const kv = createKvStorage(m.config, blocks, 16, 'f16');
  const { batch } = buildForwardBatch([{ seqId: 0, tokenIds: tokens, startPosition: 0, blockTable: Array.from({ length: blocks }, (_, i) => i), sample: true }], 16);
  batch.logitRows = Int32Array.from(tokens, (_, i) => i);
  return m.forward(batch, kv);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let agree = 0;
let total = 0;
const margins: number[] = [];
const errors: number[] = [];
for (const text of texts) {
  const lt = logitsAll(tm, text);
  const ld = logitsAll(dm, text);
  for (let r = 1; r < text.length - 1; r++) {
    const o = r * V;
    let a = 0;
    let b = -1;
    let d = 0;
    let se = 0;
    for (let v = 0; v < V; v++) {
      if (lt[o + v]! > lt[o + a]!) a = v;
      if (ld[o + v]! > ld[o + d]!) d = v;
      se += (ld[o + v]! - lt[o + v]!) ** 2;
    }
    for (let v = 0; v < V; v++) if (v !== a && (b < 0 || lt[o + v]! > lt[o + b]!)) b = v;
    if (a === d) agree++;
    total++;
    margins.push(lt[o + a]! - lt[o + b]!);
    errors.push(Math.sqrt(se / V));
  }
}
const name = `${values['draft-model'] ?? 'self'}${dtype ? ` as ${dtype}` : ''}`;
console.log(`| target | draft | positions | argmax agreement | target top-2 logit margin, median | draft logit error (RMS), median |`);
console.log(`|---|---|---:|---:|---:|---:|`);
console.log(`| ${values.model} | ${name} | ${total} | ${((100 * agree) / total).toFixed(1)}% | ${median(margins).toFixed(3)} | ${median(errors).toFixed(3)} |`);
