// loadModel / readModelHeader over GGUF and llama2.c files, the llama2.c tokenizer.bin reader, and
// the errors for files that are missing, truncated, corrupt or of an unsupported architecture.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, readModelHeader, ModelFileError, type LoadedModel } from '../../src/model/loaders/index.js';
import { encodeGguf, ggufValue, type GgufSpec, type GgufTypedValue } from '../../src/model/loaders/gguf-writer.js';
import { readLlama2cVocab } from '../../src/model/loaders/llama2c-vocab.js';
import { makeModel, modelSpec, PRESETS } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { dequantize, quantize } from '../../src/model/kernels/quant.js';
import type { WeightTensor } from '../../src/model/weights.js';
import { sharedModelFile, STORIES260K, LLAMA2_TOKENIZER_BIN } from '../helpers/models.js';

const dir = mkdtempSync(join(tmpdir(), 'stepwise-loaders-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const tinyF32 = join(dir, 'tiny-f32.gguf');
const tinyQ8 = join(dir, 'tiny-q8_0.gguf');
before(async () => {
  await makeModel({ preset: 'tiny', dtype: 'f32', seed: 5, out: tinyF32 });
  await makeModel({ preset: 'tiny', dtype: 'q8_0', seed: 5, out: tinyQ8 });
});

function expectFileError(p: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<void> | void {
  const check = (e: unknown) => {
    assert.ok(e instanceof ModelFileError, `expected ModelFileError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, pattern);
    return true;
  };
  if (typeof p === 'function') assert.throws(p, check);
  else return assert.rejects(p, check);
}

function f32s(w: WeightTensor): Float32Array {
  return dequantize(w);
}

test('loadModel reads a generated tiny GGUF: config, tied output, weights as views of the file', async () => {
  const m = await loadModel(tinyF32);
  assert.equal(m.format, 'gguf');
  assert.deepEqual(m.config, {
    arch: 'llama', dim: 64, hiddenDim: 192, nLayers: 2, nHeads: 8, nKvHeads: 4, headDim: 8, vocabSize: 512,
    contextLength: 512, ropeTheta: 10000, ropeDim: 8, normEps: Math.fround(1e-5), tiedEmbeddings: true,
  });
  const w = m.weights;
  assert.equal(w.output, w.tokenEmbedding);
  assert.equal(w.layers.length, 2);
  const l = w.layers[1]!;
  const shapes = [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown].map((t) => [t.name, t.dtype, t.rows, t.cols]);
  assert.deepEqual(shapes, [
    ['blk.1.attn_q.weight', 'f32', 64, 64], ['blk.1.attn_k.weight', 'f32', 32, 64], ['blk.1.attn_v.weight', 'f32', 32, 64],
    ['blk.1.attn_output.weight', 'f32', 64, 64], ['blk.1.ffn_gate.weight', 'f32', 192, 64], ['blk.1.ffn_up.weight', 'f32', 192, 64],
    ['blk.1.ffn_down.weight', 'f32', 64, 192],
  ]);
  assert.ok(l.attnNorm instanceof Float32Array && l.attnNorm.length === 64);
  assert.ok(w.outputNorm instanceof Float32Array && w.outputNorm.length === 64);
  // Each tensor is a view of exactly its bytes of the file (its own buffer over the mapping, or
  // one read of those bytes): nothing else is held, and the f32 norms are views too.
  for (const t of [w.tokenEmbedding, l.wq, l.wDown]) {
    assert.equal(t.data.byteOffset, 0);
    assert.equal(t.data.buffer.byteLength, t.data.byteLength, `${t.name} is a view of its own bytes`);
  }
  assert.equal(l.ffnNorm.buffer.byteLength, 64 * 4, 'f32 norms are views of their bytes too');
  assert.equal((m.metadata['tokenizer.ggml.tokens'] as string[]).length, 512);
  assert.equal(m.metadata['tokenizer.ggml.model'], 'llama');

  const h = await readModelHeader(tinyF32);
  assert.equal(h.format, 'gguf');
  assert.deepEqual(h.config, m.config);
  assert.deepEqual({ ...h.metadata }, { ...m.metadata });
});

test('the q8_0 file of the same seed holds the same model up to quantization', async () => {
  const a = await loadModel(tinyF32);
  const b = await loadModel(tinyQ8);
  assert.deepEqual(b.config, a.config);
  assert.equal(b.weights.layers[0]!.wq.dtype, 'q8_0');
  assert.equal(b.weights.layers[0]!.attnNorm.constructor, Float32Array);
  assert.deepEqual(b.weights.outputNorm, a.weights.outputNorm);
  for (const pick of [(m: LoadedModel) => m.weights.tokenEmbedding, (m: LoadedModel) => m.weights.layers[1]!.wDown]) {
    const x = f32s(pick(a));
    const y = f32s(pick(b));
    let maxErr = 0, maxAbs = 0;
    for (let i = 0; i < x.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(x[i]! - y[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(x[i]!));
    }
    assert.ok(maxErr > 0 && maxErr < maxAbs / 127, `q8_0 error ${maxErr} vs max ${maxAbs}`);
  }
});

// Hand-made variants of a small llama GGUF, for the mapping and its errors.
const SHAPE = { ...PRESETS.tiny, nLayers: 1, vocabSize: 300, tied: false };

function variant(edit: (s: { metadata: Array<[string, GgufTypedValue]>; tensors: GgufSpec['tensors'][number][] }) => void): Uint8Array {
  const { spec } = modelSpec({ shape: SHAPE, dtype: 'f32', seed: 1, vocab: syntheticVocab(300), name: 'variant' });
  const s = { metadata: [...(spec.metadata as Array<[string, GgufTypedValue]>)], tensors: [...spec.tensors] };
  edit(s);
  return encodeGguf(s);
}

function writeVariant(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

const setMeta = (s: { metadata: Array<[string, GgufTypedValue]> }, key: string, v: GgufTypedValue | undefined) => {
  const i = s.metadata.findIndex(([k]) => k === key);
  if (v === undefined) s.metadata.splice(i, 1);
  else if (i < 0) s.metadata.push([key, v]);
  else s.metadata[i] = [key, v];
};

test('GGUF mapping: untied output, optional keys default, f16 norms become float32', async () => {
  const p = writeVariant('variant.gguf', variant((s) => {
    setMeta(s, 'llama.rope.freq_base', undefined);
    setMeta(s, 'llama.rope.dimension_count', ggufValue.u32(4));
    setMeta(s, 'llama.attention.head_count_kv', undefined);
    setMeta(s, 'llama.attention.head_count', ggufValue.u32(4)); // 4 heads of 16, all KV heads
    const i = s.tensors.findIndex((t) => t.name === 'blk.0.attn_k.weight');
    s.tensors[i] = { ...s.tensors[i]!, dims: [64, 64], data: new Uint8Array(64 * 64 * 4) };
    const j = s.tensors.findIndex((t) => t.name === 'blk.0.attn_v.weight');
    s.tensors[j] = { ...s.tensors[j]!, dims: [64, 64], data: new Uint8Array(64 * 64 * 4) };
    const n = s.tensors.findIndex((t) => t.name === 'output_norm.weight');
    s.tensors[n] = { name: 'output_norm.weight', type: 'f16', dims: [64], data: quantize('f16', new Float32Array(64).fill(1.5), 1, 64) };
  }));
  const m = await loadModel(p);
  assert.equal(m.config.nHeads, 4);
  assert.equal(m.config.nKvHeads, 4, 'head_count_kv defaults to head_count');
  assert.equal(m.config.headDim, 16);
  assert.equal(m.config.ropeDim, 4);
  assert.equal(m.config.ropeTheta, 10000, 'freq_base defaults to 10000');
  assert.equal(m.config.vocabSize, 300);
  assert.equal(m.config.tiedEmbeddings, false);
  assert.notEqual(m.weights.output, m.weights.tokenEmbedding);
  assert.equal(m.weights.output.name, 'output.weight');
  assert.ok(m.weights.outputNorm instanceof Float32Array);
  assert.deepEqual([...m.weights.outputNorm], new Array(64).fill(1.5));
});

test('GGUF errors: unsupported architecture, missing keys and tensors, wrong shapes, unsupported tensor type', async () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['arch.gguf', variant((s) => setMeta(s, 'general.architecture', ggufValue.string('gpt2'))), /unsupported model architecture 'gpt2' \(supported: llama, qwen2, qwen3, gemma3\)/],
    ['noarch.gguf', variant((s) => setMeta(s, 'general.architecture', undefined)), /lacks 'general\.architecture'/],
    ['nodim.gguf', variant((s) => setMeta(s, 'llama.embedding_length', undefined)), /lacks 'llama\.embedding_length'/],
    ['baddim.gguf', variant((s) => setMeta(s, 'llama.embedding_length', ggufValue.string('64'))), /'llama\.embedding_length' must be a positive integer/],
    ['notensor.gguf', variant((s) => void s.tensors.splice(s.tensors.findIndex((t) => t.name === 'blk.0.ffn_up.weight'), 1)), /no tensor 'blk\.0\.ffn_up\.weight'/],
    ['shape.gguf', variant((s) => {
      const i = s.tensors.findIndex((t) => t.name === 'blk.0.ffn_down.weight');
      s.tensors[i] = { ...s.tensors[i]!, dims: [64, 192], data: new Uint8Array(64 * 192 * 4) };
    }), /tensor 'blk\.0\.ffn_down\.weight' has shape \[64, 192\], expected \[192, 64\]/],
    ['layers.gguf', variant((s) => setMeta(s, 'llama.block_count', ggufValue.u32(2))), /no tensor 'blk\.1\.attn_norm\.weight'/],
    ['q5.gguf', variant((s) => {
      const i = s.tensors.findIndex((t) => t.name === 'blk.0.attn_q.weight');
      s.tensors[i] = { name: 'blk.0.attn_q.weight', type: 16, dims: [256, 64], data: new Uint8Array(64 * 66) };
    }), /tensor 'blk\.0\.attn_q\.weight' has unsupported ggml type IQ2_XXS \(id 16\)/],
    ['kvheads.gguf', variant((s) => setMeta(s, 'llama.attention.head_count_kv', ggufValue.u32(3))), /head_count 8 is not a multiple of head_count_kv 3/],
    ['heads.gguf', variant((s) => setMeta(s, 'llama.attention.head_count', ggufValue.u32(7))), /embedding_length 64 is not a multiple of head_count 7/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const p = writeVariant(name, bytes);
    await expectFileError(loadModel(p), new RegExp(`${name}: .*${pattern.source}`));
    await expectFileError(readModelHeader(p), pattern);
  }
});

test('missing, empty, junk and truncated files', async () => {
  await expectFileError(loadModel(join(dir, 'missing.gguf')), /missing\.gguf: no such file/);
  await expectFileError(readModelHeader(join(dir, 'missing.gguf')), /no such file/);
  await expectFileError(loadModel(dir), /is a directory/);
  const empty = writeVariant('empty.bin', new Uint8Array(0));
  await expectFileError(loadModel(empty), /empty\.bin: file is empty/);
  await expectFileError(readModelHeader(empty), /file is empty/);
  const junk = writeVariant('junk.bin', new TextEncoder().encode('this is certainly not a model file at all, just text'));
  await expectFileError(loadModel(junk), /junk\.bin: not a model file: not GGUF \(magic bytes 74 68 69 73, expected 47 47 55 46 "GGUF"\) and not a llama2\.c checkpoint/);
  await expectFileError(readModelHeader(junk), /not a model file/);
  const bytes = readFileSync(tinyF32);
  const cut = writeVariant('cut.gguf', bytes.subarray(0, bytes.length - 100));
  await expectFileError(loadModel(cut), /cut\.gguf: truncated GGUF file: data of tensor 'output_norm\.weight'/);
  await expectFileError(readModelHeader(cut), /truncated GGUF file/);
  const magic = Buffer.from(bytes);
  magic.write('GGUX', 0);
  await expectFileError(loadModel(writeVariant('magic.gguf', magic)), /not a model file: not GGUF \(magic bytes 47 47 55 58/);
});

// ---------------------------------------------------------------------------------------------
// llama2.c checkpoints.

/** A small llama2.c checkpoint whose every float says where it is: section*1000 + index (mod 1000). */
function llama2cFile(c: { dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number; seqLen: number }, tied: boolean): Uint8Array {
  const head = c.dim / c.heads;
  const kv = c.kvHeads * head;
  const sizes = [
    c.vocab * c.dim, c.layers * c.dim, c.layers * c.dim * c.dim, c.layers * kv * c.dim, c.layers * kv * c.dim, c.layers * c.dim * c.dim,
    c.layers * c.dim, c.layers * c.hidden * c.dim, c.layers * c.dim * c.hidden, c.layers * c.hidden * c.dim, c.dim,
    (c.seqLen * head) / 2, (c.seqLen * head) / 2, ...(tied ? [] : [c.vocab * c.dim]),
  ];
  const floats = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  let o = 0;
  sizes.forEach((n, s) => {
    for (let i = 0; i < n; i++) floats[o + i] = s * 1000 + (i % 1000);
    o += n;
  });
  const header = new Int32Array([c.dim, c.hidden, c.layers, c.heads, c.kvHeads, tied ? c.vocab : -c.vocab, c.seqLen]);
  return Buffer.concat([Buffer.from(header.buffer), Buffer.from(floats.buffer)]);
}

const L2C = { dim: 16, hidden: 24, layers: 2, heads: 4, kvHeads: 2, vocab: 10, seqLen: 8 };

test('llama2.c checkpoint: header, section order, layer slicing, untied classifier', async () => {
  const p = writeVariant('untied.bin', llama2cFile(L2C, false));
  const m = await loadModel(p);
  assert.equal(m.format, 'llama2c');
  assert.deepEqual(m.metadata, {});
  assert.deepEqual(m.config, {
    arch: 'llama', dim: 16, hiddenDim: 24, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 4, vocabSize: 10, contextLength: 8,
    ropeTheta: 10000, ropeDim: 4, normEps: 1e-5, tiedEmbeddings: false,
  });
  const w = m.weights;
  const first = (t: WeightTensor) => f32s(t)[0];
  assert.equal(first(w.tokenEmbedding), 0);
  assert.equal(w.layers[1]!.attnNorm[0], 1000 + 16);
  assert.equal(first(w.layers[1]!.wq), 2000 + 256);
  assert.equal(first(w.layers[1]!.wk), 3000 + 128);
  assert.equal(first(w.layers[1]!.wv), 4000 + 128);
  assert.equal(first(w.layers[0]!.wo), 5000);
  assert.equal(w.layers[1]!.ffnNorm[3], 6000 + 19);
  assert.equal(first(w.layers[1]!.wGate), 7000 + 384, 'w1 is the gate');
  assert.equal(first(w.layers[1]!.wDown), 8000 + 384, 'w2 is the down projection');
  assert.equal(first(w.layers[1]!.wUp), 9000 + 384, 'w3 is the up projection');
  assert.equal(w.outputNorm[5], 10005);
  assert.equal(first(w.output), 13000, 'wcls follows the freq_cis tables');
  assert.deepEqual([w.layers[0]!.wk.rows, w.layers[0]!.wk.cols, w.layers[0]!.wDown.rows, w.layers[0]!.wDown.cols], [8, 16, 16, 24]);
  // Row r of wq in layer 1 starts r*dim floats into the layer's slice.
  assert.equal(f32s(w.layers[1]!.wq)[3 * 16 + 2], 2000 + ((256 + 3 * 16 + 2) % 1000));

  const tied = await loadModel(writeVariant('tied.bin', llama2cFile(L2C, true)));
  assert.equal(tied.config.tiedEmbeddings, true);
  assert.equal(tied.weights.output, tied.weights.tokenEmbedding);
  assert.deepEqual((await readModelHeader(p)).config, m.config);
});

test('llama2.c errors: truncated, trailing bytes, impossible header', async () => {
  const good = llama2cFile(L2C, false);
  await expectFileError(loadModel(writeVariant('short.bin', good.subarray(0, good.length - 4))), /short\.bin: truncated llama2\.c checkpoint: a header of dim 16, .* needs \d+ bytes, the file has \d+/);
  await expectFileError(readModelHeader(join(dir, 'short.bin')), /truncated llama2\.c checkpoint/);
  await expectFileError(loadModel(writeVariant('long.bin', Buffer.concat([good, Buffer.alloc(8)]))), /not a valid llama2\.c checkpoint/);
  const bad = Buffer.from(good);
  bad.writeInt32LE(3, 12); // 3 heads do not divide dim 16
  await expectFileError(loadModel(writeVariant('heads.bin', bad)), /n_heads 3/);
  await expectFileError(loadModel(writeVariant('tiny.bin', good.subarray(0, 10))), /only 10 bytes/);
});

test('stories260K.bin loads with its published shape', async (t) => {
  const f = sharedModelFile(STORIES260K);
  if (f.missing) return t.skip(f.missing);
  const m = await loadModel(f.path);
  assert.equal(m.format, 'llama2c');
  assert.deepEqual(
    [m.config.dim, m.config.hiddenDim, m.config.nLayers, m.config.nHeads, m.config.nKvHeads, m.config.vocabSize, m.config.contextLength, m.config.tiedEmbeddings],
    [64, 172, 5, 8, 4, 512, 512, true],
  );
  assert.equal(m.weights.layers[4]!.wk.rows, 32);
  const bytes = readFileSync(f.path);
  // The last layer's rms_ffn vector sits after the embedding, rms_att and the four attention matrices.
  const off = 28 + 4 * (512 * 64 + 5 * 64 + 5 * 64 * 64 * 2 + 5 * 32 * 64 * 2 + 4 * 64);
  assert.equal(m.weights.layers[4]!.ffnNorm[0], bytes.readFloatLE(off));
  for (const v of m.weights.outputNorm) assert.ok(Number.isFinite(v) && v > 0);
});

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin.

function vocabFile(pieces: string[], scores: number[], maxLen: number): Buffer {
  const parts: Buffer[] = [Buffer.from(new Int32Array([maxLen]).buffer)];
  pieces.forEach((p, i) => {
    const b = Buffer.from(p, 'utf8');
    const h = Buffer.alloc(8);
    h.writeFloatLE(scores[i]!, 0);
    h.writeInt32LE(b.length, 4);
    parts.push(h, b);
  });
  return Buffer.concat(parts);
}

test('readLlama2cVocab reads pieces, scores and max length; errors name the broken token', () => {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', ' the', 'é', ''];
  const scores = [0, 0, 0, -1.5, -2.25, -3];
  const p = writeVariant('tok.bin', vocabFile(pieces, scores, 7));
  assert.deepEqual(readLlama2cVocab(p), { pieces, scores, maxTokenLength: 7 });
  const bytes = readFileSync(p);
  assert.throws(() => readLlama2cVocab(writeVariant('tok-cut.bin', bytes.subarray(0, bytes.length - 9))), (e: unknown) =>
    e instanceof ModelFileError && /tok-cut\.bin: truncated llama2\.c tokenizer file: token 4 bytes run past the end/.test(e.message));
  assert.throws(() => readLlama2cVocab(writeVariant('tok-cut2.bin', bytes.subarray(0, bytes.length - 2))), /token 5 header at byte 66 runs past the end/);
  assert.throws(() => readLlama2cVocab(writeVariant('tok-bad.bin', vocabFile(['a'], [0], -1))), /max_token_length is -1/);
  assert.throws(() => readLlama2cVocab(join(dir, 'none.bin')), /none\.bin: no such file/);
});

test('the Llama 2 tokenizer.bin has 32000 pieces', (t) => {
  const f = sharedModelFile(LLAMA2_TOKENIZER_BIN);
  if (f.missing) return t.skip(f.missing);
  const v = readLlama2cVocab(f.path);
  assert.equal(v.pieces.length, 32000);
  assert.equal(v.maxTokenLength, 27);
  assert.deepEqual(v.pieces.slice(0, 4), ['<unk>', '\n<s>\n', '\n</s>\n', '<0x00>']);
  assert.equal(v.pieces[15043], ' Hello');
  assert.equal(v.pieces[260], ' t');
  assert.equal(v.scores[260], -1);
});
