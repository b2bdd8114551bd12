// Structured outputs through the official `openai` client: a random-weight model with the real
// Llama 2 vocabulary (32,000 SentencePiece pieces) answers 100 requests over varied JSON schemas,
// choices, regexes and EBNF grammars; every answer that ends with "stop" must match its
// constraint, and the grammar must not trap the model (>= 90% end within 256 tokens). A random
// model samples nearly uniformly among the tokens the grammar allows, so this is a hard test of the
// masks: any token the grammar should have refused shows up as an invalid answer.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { makeModel } from '../../src/model/make-model.js';
import { LLAMA2_TOKENIZER_BIN, sharedModelFile } from '../helpers/models.js';
import { extra, startServer, type TestServer } from './server-helpers.js';
import { rng } from '../model/ragged-batch.js';

const vocab = sharedModelFile(LLAMA2_TOKENIZER_BIN);

type Schema = Record<string, unknown>;

/** A random schema of bounded size: every string, array and number in it is bounded. */
function randomSchema(r: () => number, depth = 0): Schema {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const kinds = depth >= 2 ? ['int', 'string', 'enum', 'pattern', 'bool'] : ['int', 'string', 'enum', 'pattern', 'bool', 'object', 'array', 'anyOf'];
  switch (pick(kinds)) {
    case 'int': {
      const lo = Math.floor(r() * 50) - 20;
      return { type: 'integer', minimum: lo, maximum: lo + 1 + Math.floor(r() * 200) };
    }
    case 'string':
      return { type: 'string', maxLength: 1 + Math.floor(r() * 12) };
    case 'enum':
      return { enum: ['red', 'green', 'blue', 'a b', 'x"y'].slice(0, 2 + Math.floor(r() * 3)) };
    case 'pattern':
      return { type: 'string', pattern: pick(['^[a-z]{1,6}$', '^[0-9]{2,4}-[A-Z]{2}$', '^(yes|no)$']) };
    case 'bool':
      return { type: 'boolean' };
    case 'array': {
      const min = Math.floor(r() * 2);
      return { type: 'array', items: randomSchema(r, depth + 1), minItems: min, maxItems: min + 1 + Math.floor(r() * 3) };
    }
    case 'anyOf':
      return { anyOf: [randomSchema(r, depth + 1), randomSchema(r, depth + 1)] };
    default: {
      const n = 1 + Math.floor(r() * 3);
      const properties: Schema = {};
      for (let i = 0; i < n; i++) properties[`k${i}`] = randomSchema(r, depth + 1);
      return { type: 'object', properties, required: Object.keys(properties), additionalProperties: false };
    }
  }
}

describe('structured outputs with the openai client', { skip: vocab.missing }, () => {
  let dir: string;
  let s: TestServer;
  const ajv = new Ajv({ strict: false });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-structured-'));
    const path = join(dir, 'tiny-llama2-vocab.gguf');
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 3, out: path, vocab: vocab.path });
    s = await startServer(path, { maxNumSeqs: 32, inProcess: true }, { modelName: 'tiny' });
  });
  after(async () => {
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers 100 requests over varied JSON schemas: every finished answer validates, >= 90% finish', async (t) => {
    const r = rng(17);
    const schemas: Schema[] = Array.from({ length: 100 }, (_, i) => {
      // Objects at the top, as response_format expects; nested kinds inside.
      const top = randomSchema(r, 1);
      return { type: 'object', properties: { answer: top, id: { type: 'integer', minimum: 0, maximum: i + 1 } }, required: ['answer', 'id'], additionalProperties: false };
    });
    const answers = await Promise.all(
      schemas.map((schema, i) =>
        s.client.chat.completions.create({
          model: s.model,
          messages: [{ role: 'user', content: 'Fill in the form.' }],
          max_tokens: 256,
          seed: i,
          response_format: { type: 'json_schema', json_schema: { name: `form${i}`, schema, strict: true } },
        }),
      ),
    );
    let stopped = 0;
    answers.forEach((a, i) => {
      const c = a.choices[0]!;
      if (c.finish_reason !== 'stop') return;
      stopped++;
      const text = c.message.content ?? '';
      let value: unknown;
      assert.doesNotThrow(() => (value = JSON.parse(text)), `answer ${i} is not JSON: ${text}`);
      assert.ok(ajv.validate(schemas[i]!, value), `answer ${i} ${text} does not match ${JSON.stringify(schemas[i])}: ${ajv.errorsText()}`);
    });
    t.diagnostic(`${stopped} of 100 answers ended with stop`);
    assert.ok(stopped >= 90, `${stopped} of 100 answers ended with stop`);
  });

  it('keeps to choices, regexes and EBNF grammars, streamed or not', async () => {
    const choices = ['yes', 'no', 'not sure'];
    const regex = '[0-9]{3}-[a-z]{2,4}';
    const grammar = 'root ::= "(" item ("," item)* ")"\nitem ::= [a-c] | "[" [0-9]+ "]"';
    const grammarRe = /^\((?:[a-c]|\[[0-9]+\])(?:,(?:[a-c]|\[[0-9]+\]))*\)$/;
    const runs = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const base = { model: s.model, prompt: 'Answer:', max_tokens: 64, seed: i };
        const c = await s.client.completions.create(extra(base, { structured_outputs: { choice: choices } }));
        const g = await s.client.completions.create(extra(base, { guided_regex: regex }));
        const e = await s.client.completions.create(extra({ ...base, stream: true as const }, { guided_grammar: grammar }));
        let text = '';
        let finish: string | null = null;
        for await (const ch of e) {
          text += ch.choices[0]?.text ?? '';
          finish = ch.choices[0]?.finish_reason ?? finish;
        }
        return { c: c.choices[0]!, g: g.choices[0]!, e: { text, finish } };
      }),
    );
    let finished = 0;
    for (const { c, g, e } of runs) {
      assert.equal(c.finish_reason, 'stop');
      assert.ok(choices.includes(c.text), `choice answer ${JSON.stringify(c.text)}`);
      assert.equal(g.finish_reason, 'stop');
      assert.match(g.text, new RegExp(`^${regex}$`));
      if (e.finish === 'stop') {
        finished++;
        assert.match(e.text, grammarRe);
      } else {
        assert.equal(e.finish, 'length');
      }
    }
    assert.ok(finished >= 9, `${finished} of 10 grammar answers ended with stop`);
  });

  it('refuses constraints that cannot be compiled with a 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'strin' } } } }, 'response_format.json_schema.schema', /Unsupported type "strin"/],
      [{ guided_grammar: 'root ::= missing' }, 'guided_grammar', /Rule "missing" is not defined/],
      [{ guided_regex: '(' }, 'guided_regex', /parenthesis/],
      [{ structured_outputs: { regex: 'a', choice: ['b'] } }, 'structured_outputs.choice', /exactly one/],
      [{ guided_json: { type: 'object' }, guided_regex: 'a' }, 'guided_regex', /only one output constraint/],
      [{ response_format: { type: 'yaml' } }, 'response_format.type', /'text', 'json_object' or 'json_schema'/],
    ];
    for (const [fields, param, message] of cases) {
      await assert.rejects(
        s.client.chat.completions.create(extra({ model: s.model, messages: [{ role: 'user' as const, content: 'x' }], max_tokens: 4 }, fields)),
        (e: { status?: number; error?: { param?: string; message?: string } }) => {
          assert.equal(e.status, 400, JSON.stringify(fields));
          assert.equal(e.error?.param, param);
          assert.match(e.error?.message ?? '', message);
          return true;
        },
      );
    }
  });

  it('leaves unconstrained rows of a mixed batch exactly as they are alone', async () => {
    const plain = { model: s.model, prompt: 'Once upon a time', max_tokens: 24, seed: 5, temperature: 0.9 };
    const alone = await s.client.completions.create(extra(plain, { ignore_eos: true, return_token_ids: true }));
    const mixed = await Promise.all([
      s.client.completions.create(extra(plain, { ignore_eos: true, return_token_ids: true })),
      ...Array.from({ length: 6 }, (_, i) =>
        s.client.completions.create(extra({ ...plain, seed: 100 + i }, { guided_json: { type: 'object', properties: { a: { type: 'integer' } } } })),
      ),
    ]);
    const ids = (r: unknown) => (r as { choices: Array<{ token_ids: number[] }> }).choices[0]!.token_ids;
    assert.deepEqual(ids(mixed[0]), ids(alone));
    assert.equal(mixed[0]!.choices[0]!.text, alone.choices[0]!.text);
  });

  it('lets a grammar end before max_tokens even with ignore_eos or min_tokens: only end tokens follow, hidden', async () => {
    const [r] = await s.llm.generate('Answer:', { maxTokens: 20, seed: 2, ignoreEos: true, structuredOutputs: { choice: ['yes', 'no'] } });
    assert.ok(['yes', 'no'].includes(r!.text), r!.text);
    assert.equal(r!.finishReason, 'length');
    assert.equal(r!.tokenIds.length, 20);
    const [m] = await s.llm.generate('Answer:', { maxTokens: 20, minTokens: 10, seed: 2, structuredOutputs: { choice: ['yes', 'no'] } });
    assert.ok(['yes', 'no'].includes(m!.text), m!.text);
    assert.equal(m!.finishReason, 'stop');
  });

  it('computes the grammar masks of 32 sequences in a small share of their steps, and records it per step', async (t) => {
    const records: Array<{ grammarMs?: number; totalMs: number; numDecodeTokens: number }> = [];
    const off = s.llm.engine.onStep((r) => records.push(r));
    await s.llm.generate(
      Array.from({ length: 32 }, (_, i) => `Story ${i}`),
      { maxTokens: 24, seed: 1, structuredOutputs: { json: { type: 'object', properties: { title: { type: 'string', maxLength: 40 } } } } },
    );
    off();
    const decode = records.filter((r) => r.numDecodeTokens >= 16);
    assert.ok(decode.length > 0);
    assert.ok(decode.every((r) => (r.grammarMs ?? 0) > 0), 'every decode step of constrained rows computed masks');
    const share = decode.reduce((a, r) => a + (r.grammarMs ?? 0), 0) / decode.reduce((a, r) => a + r.totalMs, 0);
    t.diagnostic(`grammar masks: ${(100 * share).toFixed(1)}% of ${decode.length} decode steps of 32 constrained rows (tiny model)`);
  });
});
