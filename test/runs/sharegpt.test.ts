import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseShareGpt, readShareGptFile } from '../../src/runs/sharegpt.js';
import { buildWorkload } from '../../src/runs/workload.js';
import { DatasetError } from '../../src/runs/errors.js';
import { wordTokenizer } from './helpers.js';

const turn = (from: string, value: string) => ({ from, value });

test('conversations become (first user turn, the answer to it) pairs; ones without an answer are skipped', () => {
  const f = parseShareGpt(
    JSON.stringify([
      { id: 'a', conversations: [turn('human', 'hello there'), turn('gpt', 'hi'), turn('human', 'more'), turn('gpt', 'ok')] },
      { id: 'b', conversations: [turn('human', 'alone')] },
      { id: 'c', conversations: [turn('system', 'be nice'), turn('user', 'question?'), turn('assistant', 'answer.')] },
      { id: 'd', conversations: [] },
      { id: 'e', conversations: [turn('gpt', 'answer first'), turn('human', 'then a question')] },
    ]),
    'x.json',
  );
  assert.deepEqual(f.pairs, [
    { entry: 0, prompt: 'hello there', completion: 'hi' },
    { entry: 2, prompt: 'question?', completion: 'answer.' },
  ]);
  assert.equal(f.skipped, 3);
});

test('malformed files get an error naming the file, the entry and the problem', () => {
  const cases: Array<[string, RegExp]> = [
    ['{not json', /^bad\.json: not valid JSON/],
    ['{"conversations": []}', /^bad\.json: expected a JSON array of conversations, got an object/],
    ['[1]', /entry 0: expected an object with a "conversations" array, got a number/],
    ['[{"id": "x"}]', /entry 0: "conversations" must be an array, got nothing/],
    ['[{"conversations": [{"from": "human", "value": "hi"}]}, {"conversations": "text"}]', /entry 1: "conversations" must be an array, got a string/],
    ['[{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": 3}]}]', /entry 0, turn 1: "value" must be a string, got a number/],
    ['[{"conversations": [{"value": "hi"}]}]', /entry 0, turn 0: "from" must be a string/],
    ['[{"conversations": [null]}]', /entry 0, turn 0: expected an object/],
    ['[]', /no usable conversations/],
    ['[{"conversations": [{"from": "human", "value": "hi"}]}]', /no usable conversations .*1 entries read/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseShareGpt(text, 'bad.json'), (e: Error) => e instanceof DatasetError && re.test(e.message), text);
  }
  assert.throws(() => readShareGptFile('/nonexistent/sharegpt.json'), /\/nonexistent\/sharegpt\.json: file not found/);
});

test('a ShareGPT workload: token lengths from the tokenizer, short pairs dropped, seeded sampling', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-sharegpt-'));
  try {
    const file = join(dir, 'sg.json');
    const words = (n: number, w: string) => Array.from({ length: n }, (_, i) => `${w}${i}`).join(' ');
    const data = Array.from({ length: 40 }, (_, i) => ({ id: String(i), conversations: [turn('human', words(5 + i, 'p')), turn('gpt', words(i % 10 === 0 ? 2 : 4 + i, 'c'))] }));
    writeFileSync(file, JSON.stringify(data));
    const tok = wordTokenizer();
    const spec = { kind: 'sharegpt' as const, seed: 1, numRequests: 20, dataset: file, arrival: { kind: 'offline' as const } };
    const w = buildWorkload(spec, { vocabSize: tok.vocabSize, tokenizer: tok });
    assert.equal(w.requests.length, 20);
    for (const r of w.requests) {
      const n = r.promptText!.split(' ').length;
      assert.equal(r.promptTokenIds.length, n + 1, 'words + BOS');
      const i = n - 5; // the conversation it came from
      assert.notEqual(i % 10, 0, 'pairs with a 2-token answer are dropped');
      assert.equal(r.outputLen, 4 + i);
    }
    assert.deepEqual(buildWorkload(spec, { vocabSize: tok.vocabSize, tokenizer: tok }).requests, w.requests);
    const other = buildWorkload({ ...spec, seed: 2 }, { vocabSize: tok.vocabSize, tokenizer: tok });
    assert.notDeepEqual(other.requests.map((r) => r.outputLen), w.requests.map((r) => r.outputLen));
    // Asking for more than there are gives all usable ones (36 of 40).
    assert.equal(buildWorkload({ ...spec, numRequests: 1000 }, { vocabSize: tok.vocabSize, tokenizer: tok }).requests.length, 36);
    assert.throws(() => buildWorkload(spec, { vocabSize: 100 }), /needs a tokenizer/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
