// Structured outputs inside the engine: constrained sequences that are preempted and recomputed
// (a KV cache far smaller than the demand) keep generating exactly what they generate unhindered —
// their matchers are rebuilt from the tokens they keep — in the worker-thread runner as in process;
// and a request whose grammar is still compiling waits outside the scheduler without stalling others.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LLM } from '../../src/llm.js';
import { makeModel } from '../../src/model/make-model.js';
import { LLAMA2_TOKENIZER_BIN, sharedModelFile } from '../helpers/models.js';

const vocab = sharedModelFile(LLAMA2_TOKENIZER_BIN);

describe('structured outputs in the engine', { skip: vocab.missing }, () => {
  let dir: string;
  let path: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-so-engine-'));
    path = join(dir, 'tiny.gguf');
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 5, out: path, vocab: vocab.path });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const schema = {
    type: 'object',
    properties: { words: { type: 'array', items: { type: 'string', maxLength: 8 }, minItems: 2, maxItems: 4 }, n: { type: 'integer', minimum: 0, maximum: 999 } },
    required: ['words', 'n'],
    additionalProperties: false,
  };

  async function runAll(opts: { numBlocks: number; inProcess: boolean }) {
    const llm = await LLM.load(path, { maxNumSeqs: 12, blockSize: 4, maxModelLen: 80, enablePrefixCaching: false, threads: 1, ...opts });
    try {
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          llm.generate(`Request ${i} wants`, {
            maxTokens: 48,
            ...(i % 3 === 2 ? { temperature: 0.8, seed: i } : { temperature: i % 3 === 0 ? 0 : 1, seed: 40 + i, structuredOutputs: { json: schema } }),
          }),
        ),
      );
      return { results: results.map(([r]) => ({ text: r!.text, tokens: r!.tokenIds, finish: r!.finishReason })), preemptions: llm.engine.stats().preemptions };
    } finally {
      await llm.close();
    }
  }

  it('preempted and recomputed sequences generate exactly what they do unhindered, in process and in a worker', async () => {
    const free = await runAll({ numBlocks: 1024, inProcess: true });
    assert.equal(free.preemptions, 0);
    for (const [i, r] of free.results.entries()) {
      if (i % 3 === 2 || r.finish !== 'stop') continue;
      const v = JSON.parse(r.text) as { words: string[]; n: number };
      assert.ok(v.words.length >= 2 && v.words.length <= 4 && Number.isInteger(v.n), r.text);
    }
    for (const inProcess of [true, false]) {
      const tight = await runAll({ numBlocks: 40, inProcess });
      assert.ok(tight.preemptions >= 3, `expected preemptions, got ${tight.preemptions}`);
      assert.deepEqual(tight.results, free.results, `inProcess ${inProcess}`);
    }
  });

  it('holds a request whose grammar is compiling outside the scheduler; a bad one fails only its own stream', async () => {
    const llm = await LLM.load(path, { inProcess: true, threads: 1 });
    try {
      const bad = llm.generate('x', { maxTokens: 4, structuredOutputs: { grammar: 'root ::= undefined_rule' } });
      const good = llm.generate('x', { maxTokens: 4, structuredOutputs: { regex: '[a-c]{2}' } });
      const plain = llm.generate('x', { maxTokens: 4, temperature: 0 });
      await assert.rejects(bad, (e: Error) => e.name === 'InvalidParamError' && /undefined_rule/.test(e.message));
      const [g] = await good;
      assert.match(g!.text, /^[a-c]{2}$/);
      assert.equal((await plain)[0]!.tokenIds.length, 4);
      // A malformed constraint is refused at once.
      assert.throws(() => llm.stream('x', { structuredOutputs: { regex: 'a', choice: ['b'] } }), /exactly one/);
      await assert.rejects(llm.compileStructuredOutputs({ json: { type: 'nope' } }), /Unsupported type/);
    } finally {
      await llm.close();
    }
  });
});
