// make-model: deterministic files, the synthetic SentencePiece vocabulary, a llama2.c vocabulary,
// options, weight statistics, and the CLI's handling of its flags.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel, PRESETS, storageDtype, Xoshiro128 } from '../../src/model/make-model.js';
import { syntheticVocab, spmVocabFromLlama2c, SPACE, TOKEN_TYPE, RESERVED_PIECES } from '../../src/model/synthetic-vocab.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { readGguf } from '../../src/model/loaders/gguf.js';
import { dequantize } from '../../src/model/kernels/quant.js';
import { runMakeModel } from '../../src/cli/make-model.js';
import { sharedModelFile, LLAMA2_TOKENIZER_BIN } from '../helpers/models.js';

const dir = mkdtempSync(join(tmpdir(), 'stepwise-make-model-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const out = (name: string) => join(dir, name);

test('same seed writes identical bytes; another seed or dtype does not', async () => {
  await makeModel({ preset: 'tiny', dtype: 'q4_0', seed: 42, out: out('a.gguf') });
  await makeModel({ preset: 'tiny', dtype: 'q4_0', seed: 42, out: out('b.gguf') });
  await makeModel({ preset: 'tiny', dtype: 'q4_0', seed: 43, out: out('c.gguf') });
  const a = readFileSync(out('a.gguf'));
  assert.ok(a.equals(readFileSync(out('b.gguf'))));
  const c = readFileSync(out('c.gguf'));
  assert.equal(c.length, a.length);
  assert.ok(!c.equals(a));
});

test('the PRNG is deterministic, seed-sensitive and roughly standard normal', () => {
  const a = new Float32Array(20000);
  const b = new Float32Array(20000);
  new Xoshiro128(7).fillNormal(a, 1);
  new Xoshiro128(7).fillNormal(b, 1);
  assert.deepEqual(a, b);
  new Xoshiro128(8).fillNormal(b, 1);
  assert.notDeepEqual(a, b);
  new Xoshiro128(7 + 2 ** 32).fillNormal(b, 1);
  assert.notDeepEqual(a, b, 'high bits of the seed matter');
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  const variance = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `mean ${mean} variance ${variance}`);
});

test('synthetic vocabulary: exact size, reserved pieces, unique, decreasing scores, every piece reachable by merges', () => {
  for (const size of [512, 4096, 32000]) {
    const v = syntheticVocab(size);
    assert.equal(v.pieces.length, size);
    assert.equal(v.scores.length, size);
    assert.equal(v.tokenTypes.length, size);
    assert.deepEqual(v.pieces.slice(0, 3), ['<unk>', '<s>', '</s>']);
    assert.deepEqual(v.tokenTypes.slice(0, 3), [TOKEN_TYPE.unknown, TOKEN_TYPE.control, TOKEN_TYPE.control]);
    for (let b = 0; b < 256; b++) {
      assert.equal(v.pieces[3 + b], `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      assert.equal(v.tokenTypes[3 + b], TOKEN_TYPE.byte);
    }
    assert.equal(new Set(v.pieces).size, size, 'pieces are unique');
    const normal = new Set(v.pieces.slice(RESERVED_PIECES));
    for (let i = RESERVED_PIECES; i < size; i++) {
      assert.equal(v.tokenTypes[i], TOKEN_TYPE.normal);
      if (i > RESERVED_PIECES) assert.ok(v.scores[i]! < v.scores[i - 1]!, 'scores decrease');
      const p = v.pieces[i]!;
      const chars = [...p];
      if (chars.length > 1) assert.ok(normal.has(chars.slice(0, -1).join('')), `prefix of '${p}' is a piece`);
    }
    assert.ok(normal.has(SPACE) && normal.has(`${SPACE}the`) && normal.has('e'));
  }
  assert.deepEqual(syntheticVocab(600), { pieces: syntheticVocab(600).pieces, scores: syntheticVocab(600).scores, tokenTypes: syntheticVocab(600).tokenTypes });
  assert.throws(() => syntheticVocab(259), /more than 259/);
});

test('a llama2.c vocabulary becomes SentencePiece pieces with llama.cpp token types', () => {
  const v = spmVocabFromLlama2c(['<unk>', '\n<s>\n', '\n</s>\n', '<0x0A>', ' the', 'ing', ' '], [0, 0, 0, 0, -1, -2, -3]);
  assert.deepEqual(v.pieces, ['<unk>', '<s>', '</s>', '<0x0A>', `${SPACE}the`, 'ing', SPACE]);
  assert.deepEqual(v.tokenTypes, [2, 3, 3, 6, 1, 1, 1]);
  assert.deepEqual(v.scores, [0, 0, 0, 0, -1, -2, -3]);
});

test('makeModel with the Llama 2 vocabulary takes its size and pieces', async (t) => {
  const f = sharedModelFile(LLAMA2_TOKENIZER_BIN);
  if (f.missing) return t.skip(f.missing);
  const s = await makeModel({ preset: 'tiny', dtype: 'q8_0', seed: 1, out: out('l2.gguf'), vocab: f.path });
  assert.equal(s.shape.vocabSize, 32000);
  const m = await loadModel(out('l2.gguf'));
  assert.equal(m.config.vocabSize, 32000);
  const pieces = m.metadata['tokenizer.ggml.tokens'] as string[];
  const types = m.metadata['tokenizer.ggml.token_type'] as number[];
  assert.equal(pieces[15043], `${SPACE}Hello`);
  assert.deepEqual(pieces.slice(0, 3), ['<unk>', '<s>', '</s>']);
  assert.deepEqual([types[0], types[1], types[2], types[3 + 10], types[15043]], [2, 3, 3, 6, 1]);
});

test('metadata, options and k-quant fallbacks', async () => {
  const s = await makeModel({ preset: 'tiny', dtype: 'q4_k', seed: 3, out: out('opts.gguf'), tied: false, nKvHeads: 2 });
  assert.deepEqual(s.tensorsByDtype, { q5_0: 16, f32: 5 }, 'tiny rows (64, 192) are not multiples of 256: q4_k falls back to q5_0 (as llama.cpp)');
  const f = readGguf(out('opts.gguf'));
  const md = f.metadata;
  assert.equal(f.version, 3);
  assert.equal(md['general.architecture'], 'llama');
  assert.equal(md['general.file_type'], 14);
  assert.equal(md['llama.attention.head_count_kv'], 2);
  assert.equal(md['llama.context_length'], 512);
  assert.equal(md['tokenizer.ggml.model'], 'llama');
  assert.equal(md['tokenizer.ggml.bos_token_id'], 1);
  assert.equal(md['tokenizer.ggml.eos_token_id'], 2);
  assert.equal(md['tokenizer.ggml.unknown_token_id'], 0);
  assert.equal(md['tokenizer.ggml.add_bos_token'], true);
  assert.equal(md['tokenizer.ggml.add_eos_token'], false);
  assert.deepEqual(f.tensors.get('blk.1.attn_k.weight')!.dims, [64, 16]);
  assert.ok(f.tensors.has('output.weight'));

  assert.equal(storageDtype('q4_k', 256), 'q4_k');
  assert.equal(storageDtype('q4_k', 192), 'q5_0');
  assert.equal(storageDtype('q5_k', 64), 'q5_1');
  assert.equal(storageDtype('q3_k', 64), 'iq4_nl');
  assert.equal(storageDtype('q6_k', 64), 'q8_0');
  await assert.rejects(makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: out('x.gguf'), nKvHeads: 3 }), /kv heads must divide the preset's 8 heads/);
  await assert.rejects(makeModel({ preset: 'huge' as 'tiny', dtype: 'f32', seed: 1, out: out('x.gguf') }), /unknown preset 'huge'/);
  await assert.rejects(makeModel({ preset: 'tiny', dtype: 'q7_0' as 'f32', seed: 1, out: out('x.gguf') }), /unknown dtype 'q7_0'/);
});

test('q4_k_m and q5_k_m mix types per tensor as llama.cpp does', async () => {
  // small: 4 layers; llama.cpp's use_more_bits picks layers 0 and 2 for attn_v and ffn_down.
  for (const [mix, base] of [['q4_k_m', 'q4_k'], ['q5_k_m', 'q5_k']] as const) {
    await makeModel({ preset: 'small', dtype: mix, seed: 1, out: out(`${mix}.gguf`) });
    const g = readGguf(out(`${mix}.gguf`));
    const type = (name: string) => g.tensors.get(name)!.dtype;
    assert.equal(type('output.weight'), 'q6_k');
    assert.equal(type('token_embd.weight'), base);
    assert.deepEqual([0, 1, 2, 3].map((l) => type(`blk.${l}.attn_v.weight`)), ['q6_k', base, 'q6_k', base]);
    assert.deepEqual([0, 1, 2, 3].map((l) => type(`blk.${l}.ffn_down.weight`)), ['q6_k', base, 'q6_k', base]);
    assert.equal(type('blk.1.attn_q.weight'), base);
    assert.equal(g.metadata['general.file_type'], mix === 'q4_k_m' ? 15 : 17);
  }
});

test('presets have the agreed shapes; 110m is about 134M parameters', () => {
  assert.deepEqual(PRESETS.tiny, { dim: 64, hiddenDim: 192, nLayers: 2, nHeads: 8, nKvHeads: 4, vocabSize: 512, contextLength: 512, tied: true });
  assert.deepEqual(PRESETS.small, { dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 4096, contextLength: 1024, tied: false });
  assert.deepEqual(PRESETS['110m'], { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, contextLength: 1024, tied: false });
  const p = PRESETS['110m'];
  const params = 2 * p.vocabSize * p.dim + p.nLayers * (4 * p.dim * p.dim + 3 * p.dim * p.hiddenDim + 2 * p.dim) + p.dim;
  assert.ok(Math.abs(params - 134.1e6) < 0.1e6, `${params}`);
});

test('weight statistics: unit-scale inputs to every layer, norms near 1, logit scale ~3', async () => {
  await makeModel({ preset: 'tiny', dtype: 'f32', seed: 9, out: out('stats.gguf'), tied: false });
  const m = await loadModel(out('stats.gguf'));
  const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  const dim = m.config.dim;
  // q/k: std sqrt(2/dim); v/gate/up: 1/sqrt(dim); output: 3/sqrt(dim).
  const l = m.weights.layers[0]!;
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a / b - 1) < 0.05, `${what}: ${a} vs ${b}`);
  near(std(dequantize(l.wq)) * Math.sqrt(dim), Math.SQRT2, 'wq');
  near(std(dequantize(l.wv)) * Math.sqrt(dim), 1, 'wv');
  near(std(dequantize(l.wGate)) * Math.sqrt(dim), 1, 'wGate');
  near(std(dequantize(m.weights.output)) * Math.sqrt(dim), 3, 'output');
  near(std(dequantize(l.wDown)) * Math.sqrt(m.config.hiddenDim * 2 * m.config.nLayers), 1, 'wDown residual scaling');
  const meanNorm = l.attnNorm.reduce((s, v) => s + v, 0) / dim;
  assert.ok(Math.abs(meanNorm - 1) < 0.05, `norm mean ${meanNorm}`);
});

// ---------------------------------------------------------------------------------------------
// CLI.

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((stdout += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
  try {
    return { code: await runMakeModel(argv), stdout, stderr };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

test('CLI writes the model and reports it', async () => {
  const r = await cli(['--preset', 'tiny', '--dtype', 'f16', '--seed', '5', '--out', out('cli.gguf'), '--untied', '--kv-heads', '8']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*cli\.gguf: llama tiny f16, 0\.\d+M params, .*untied, 8 kv heads/);
  const m = await loadModel(out('cli.gguf'));
  assert.equal(m.config.nKvHeads, 8);
  assert.equal(m.config.tiedEmbeddings, false);
  assert.equal(m.weights.layers[0]!.wq.dtype, 'f16');
  const help = await cli(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: stepwise make-model/);
});

test('CLI --arch writes each family layout: its tensors, its metadata keys', async () => {
  const cases = [
    [['--arch', 'qwen2'], ['blk.0.attn_q.bias', 'blk.1.attn_v.bias'], 'qwen2.attention.head_count'],
    [['--arch', 'qwen3', '--head-dim', '16'], ['blk.0.attn_q_norm.weight', 'blk.0.attn_k_norm.weight'], 'qwen3.attention.key_length'],
    [['--arch', 'gemma3', '--sliding-window', '16'], ['blk.0.post_attention_norm.weight', 'blk.1.post_ffw_norm.weight'], 'gemma3.attention.sliding_window'],
    [['--arch', 'llama', '--rope-freqs'], ['rope_freqs.weight'], 'llama.rope.freq_base'],
  ] as const;
  for (const [flags, tensors, key] of cases) {
    const path = out(`arch-${flags[1]}.gguf`);
    const r = await cli(['--preset', 'tiny', '--dtype', 'q8_0', '--out', path, ...flags]);
    assert.equal(r.code, 0, r.stderr);
    const g = readGguf(path);
    assert.equal(g.metadata['general.architecture'], flags[1]);
    for (const t of tensors) assert.ok(g.tensors.has(t), `${flags[1]}: tensor ${t}`);
    assert.ok(key in g.metadata, `${flags[1]}: metadata ${key}`);
    const m = await loadModel(path);
    assert.equal(m.config.arch, flags[1]);
  }
  const q3 = await loadModel(out('arch-qwen3.gguf'));
  assert.equal(q3.config.headDim, 16);
  assert.equal(q3.weights.layers[0]!.wq.rows, 8 * 16, 'q is heads x head width, wider than dim 64');
  const g3 = await loadModel(out('arch-gemma3.gguf'));
  assert.equal(g3.config.slidingWindow, 16);
  const l31 = await loadModel(out('arch-llama.gguf'));
  assert.equal(l31.weights.ropeFreqFactors?.length, 4, 'head width 8: 4 rotated pairs');
  assert.equal(l31.config.ropeTheta, 500000);
});

test('CLI rejects bad flags with one clear line and exit code 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--dtype', 'f32', '--out', out('x.gguf')], /--preset is required/],
    [['--preset', 'big', '--out', out('x.gguf')], /unknown --preset 'big'/],
    [['--preset', 'tiny', '--dtype', 'q7_0', '--out', out('x.gguf')], /unknown --dtype 'q7_0' \(f32, f16/],
    [['--preset', 'tiny', '--arch', 'gpt2', '--out', out('x.gguf')], /unknown --arch 'gpt2' \(llama, qwen2, qwen3, gemma3\)/],
    [['--preset', 'tiny', '--arch', 'qwen3', '--head-dim', '7', '--out', out('x.gguf')], /--head-dim must be even/],
    [['--preset', 'tiny', '--arch', 'qwen3', '--rope-freqs', '--out', out('x.gguf')], /--rope-freqs applies to --arch llama only/],
    [['--preset', 'tiny', '--sliding-window', '16', '--out', out('x.gguf')], /--sliding-window applies to --arch gemma3 only/],
    [['--preset', 'tiny', '--seed', '1.5', '--out', out('x.gguf')], /--seed must be an integer, got '1\.5'/],
    [['--preset', 'tiny'], /--out FILE is required/],
    [['--preset', 'tiny', '--out', out('x.gguf'), '--tied', '--untied'], /exclude each other/],
    [['--preset', 'tiny', '--out', out('x.gguf'), '--kv-heads', '3'], /--kv-heads must be a positive divisor of the preset's 8 heads, got '3'/],
    [['--preset', 'tiny', '--out', out('x.gguf'), '--frobnicate'], /Unknown option '--frobnicate'/],
    [['--preset', 'tiny', '--out', out('x.gguf'), 'extra'], /positional/],
  ];
  for (const [argv, pattern] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.ok(!existsSync(out('x.gguf')));
  const r = await cli(['--preset', 'tiny', '--out', out('x.gguf'), '--vocab', out('missing-tokenizer.bin')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /missing-tokenizer\.bin: no such file/);
  // A folder is created when missing, but not through a regular file.
  writeFileSync(join(dir, 'a-file'), 'x');
  const w = await cli(['--preset', 'tiny', '--out', join(dir, 'a-file', 'x.gguf')]);
  assert.equal(w.code, 1);
  assert.match(w.stderr, /cannot write .*a-file/);
});
