// Deterministic random-weight Llama models written as GGUF v3, loadable by llama.cpp and Stepwise.
// They let every test and benchmark run on a model of a realistic shape without downloading one.
//
// Every tensor draws from its own stream, seeded by (seed, tensor name), so a tensor's values do not
// depend on the dtype, on tying, or on which other tensors exist: the q8_0 and f32 files of one seed
// are the same model up to quantization.
//
// Weight scales keep activations O(1) through the layers, make the output depend on the context
// (not only on the current token), and make logits decisive:
//   - embeddings ~ N(0, (EMBED_SCALE^2)/dim): small next to the layers' contributions, so the final
//     state is mostly what attention and the FFNs computed from the context. (RMSNorm rescales the
//     embedding to unit RMS before layer 0 reads it, so its absolute size does not matter there.)
//     A tied output then gives the current token only a small bonus to repeat itself, instead of
//     the e.e = |e|^2 that would make greedy decoding echo its input;
//   - q/k ~ N(0, 2/dim): attention scores q.k/sqrt(headDim) have std ~2, so heads attend
//     selectively and results depend on positions (RoPE) and on the right KV entries;
//   - v/gate/up ~ N(0, 1/dim): unit-variance outputs after RMSNorm;
//   - wo/down ~ N(0, 1/(fanIn * 2L)): the 2L residual branches add O(1) variance in total for
//     any depth (GPT-2's residual scaling);
//   - norm weights 1 + N(0, 0.1^2);
//   - logits get std ~LOGIT_STD (via the output matrix, or when tied via the final norm, whose
//     weights are then ~LOGIT_STD/EMBED_SCALE since the embedding is small), wide
//     enough that greedy choices are far apart relative to float rounding noise.

import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { DType } from './weights.js';
import { DTYPE_INFO, quantize } from './kernels/quant.js';
import { writeGgufFile, ggufValue, type GgufSpec, type GgufTensorSpec, type GgufTypedValue } from './loaders/gguf-writer.js';
import { readLlama2cVocab } from './loaders/llama2c-vocab.js';
import { splitmix32, Xoshiro128StarStar } from '../util/xoshiro128.js';
import { spmVocabFromLlama2c, syntheticVocab, type SpmVocab } from './synthetic-vocab.js';
import { FAMILIES, isArchitecture, ARCHITECTURES, type Architecture } from './families.js';
import { ggufTokenizerFromHf, type GgufTokenizer } from './hf-tokenizer.js';

export type ModelPreset = 'tiny' | 'small' | '42m' | '110m' | '8b';

export interface PresetShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  contextLength: number;
  tied: boolean;
  /** Head width when it is not dim / nHeads (Qwen3, Gemma 3 write attention.key_length). */
  headDim?: number;
}

/**
 * The family-specific parts of a generated file, with each family's usual values: what
 * `general.architecture` says, the RoPE base, Llama 3.1's rope_freqs, Gemma 3's sliding window.
 */
export interface ArchOptions {
  arch: Architecture;
  /** RoPE base; default: the family's usual one (llama 10000, qwen 1e6, gemma3 global 1e6). */
  ropeTheta?: number;
  /** Llama 3.1-style `rope_freqs.weight` (computed as the converter does for factor 8). */
  ropeFreqs?: boolean;
  /** Gemma 3 `attention.sliding_window` (default 512; tests use a small one so short prompts cross it). */
  slidingWindow?: number;
}

const DEFAULT_ROPE_THETA: Record<Architecture, number> = { llama: 10000, qwen2: 1000000, qwen3: 1000000, gemma3: 1000000 };

export const PRESETS: Record<ModelPreset, PresetShape> = {
  tiny: { dim: 64, hiddenDim: 192, nLayers: 2, nHeads: 8, nKvHeads: 4, vocabSize: 512, contextLength: 512, tied: true },
  small: { dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 4096, contextLength: 1024, tied: false },
  // llama2.c's stories42M shape (58M parameters with the untied output): weights larger than the
  // caches, so one sequence's decode is memory-bound, yet fast enough for the demo's request waves.
  '42m': { dim: 512, hiddenDim: 1376, nLayers: 8, nHeads: 8, nKvHeads: 8, vocabSize: 32000, contextLength: 1024, tied: false },
  '110m': { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, contextLength: 1024, tied: false },
  // Llama 3 8B's shape (8.0B parameters), for loading and memory benchmarks of a real-sized file.
  '8b': { dim: 4096, hiddenDim: 14336, nLayers: 32, nHeads: 32, nKvHeads: 8, vocabSize: 128256, contextLength: 8192, tied: false },
};

/**
 * llama.cpp's mixtures, the formats of most downloads: Q4_K_M / Q5_K_M store attn_v and ffn_down
 * of some layers and the output matrix in Q6_K, everything else in Q4_K / Q5_K.
 */
export type QuantMix = 'q4_k_m' | 'q5_k_m';
export const QUANT_MIXES: readonly QuantMix[] = ['q4_k_m', 'q5_k_m'];
/** A single type for every matrix, or a mixture. */
export type WeightFormat = DType | QuantMix;

export function isWeightFormat(s: string): s is WeightFormat {
  return Object.hasOwn(DTYPE_INFO, s) || (QUANT_MIXES as readonly string[]).includes(s);
}

/** llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
function useMoreBits(layer: number, nLayers: number): boolean {
  return layer < nLayers / 8 || layer >= (7 * nLayers) / 8 || (layer - Math.floor(nLayers / 8)) % 3 === 2;
}

/** The type a mixture gives the matrix `name` (blk.N.attn_v.weight etc.), before the 256-block fallback. */
export function mixDtype(format: WeightFormat, name: string, nLayers: number): DType {
  if (format !== 'q4_k_m' && format !== 'q5_k_m') return format;
  const base: DType = format === 'q4_k_m' ? 'q4_k' : 'q5_k';
  if (name === 'output.weight') return 'q6_k';
  const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(name);
  if (m && useMoreBits(Number(m[1]), nLayers)) return 'q6_k';
  return base;
}

export interface MakeModelOptions {
  preset: ModelPreset;
  dtype: WeightFormat;
  seed: number;
  out: string;
  /** A llama2.c tokenizer.bin whose vocabulary the model gets (its size overrides the preset's). */
  vocab?: string;
  /**
   * A Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json): the model gets that
   * real vocabulary, merges, special tokens and chat template (its size overrides the preset's).
   */
  tokenizer?: string;
  tied?: boolean;
  nKvHeads?: number;
  /** Family layout (default llama, as before). */
  arch?: ArchOptions;
  /** Head width when it differs from dim / heads. */
  headDim?: number;
}

export interface MakeModelSummary {
  path: string;
  params: number;
  bytes: number;
  /** Tensors written per dtype (k-quants fall back when a row is not a multiple of 256). */
  tensorsByDtype: Partial<Record<DType, number>>;
  shape: PresetShape;
}

const LOGIT_STD = 3;
/** Matrices with more values than this are written as repeats of TILE_ROWS random rows (see matrix()). */
const TILE_ABOVE = 1 << 26;
const TILE_ROWS = 256;
const NORM_JITTER = 0.1;
const EMBED_SCALE = 0.25;

/** llama_ftype values for general.file_type ("mostly X"). */
const FILE_TYPE: Record<WeightFormat, number> = {
  f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q5_1: 9, q2_k: 10, q3_k: 11, q4_k: 14, q4_k_m: 15, q5_k: 16,
  q5_k_m: 17, q6_k: 18, iq4_nl: 25, iq4_xs: 30, bf16: 32,
};

/** llama.cpp's fallbacks (llama-quant.cpp) for 256-block types on rows that are not whole blocks. */
const BLOCK_FALLBACK: Partial<Record<DType, DType>> = {
  q2_k: 'iq4_nl', q3_k: 'iq4_nl', iq4_xs: 'iq4_nl', q4_k: 'q5_0', q5_k: 'q5_1', q6_k: 'q8_0',
};

/**
 * The dtype a matrix with `cols` inputs is stored in. K-quants need rows of whole 256-blocks; like
 * llama.cpp's quantizer, rows that are not fall back to a 32-block type of similar size.
 */
export function storageDtype(dtype: DType, cols: number): DType {
  if (cols % DTYPE_INFO[dtype].blockSize === 0) return dtype;
  const fallback = BLOCK_FALLBACK[dtype];
  if (fallback && cols % DTYPE_INFO[fallback].blockSize === 0) return fallback;
  throw new RangeError(`cannot store a ${cols}-wide matrix as ${dtype}`);
}

// ---------------------------------------------------------------------------------------------
// Random numbers: splitmix32-style seeding into xoshiro128**, normals by Box-Muller.

/** 32-bit FNV-1a of a string, to key a tensor's stream by its name. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class Xoshiro128 extends Xoshiro128StarStar {
  constructor(seed: number, stream = 0) {
    // Low and high 32 bits of the seed and the stream id each pass through the mixer.
    const st = { s: seed | 0 };
    st.s = splitmix32(st) ^ (Math.floor(seed / 2 ** 32) | 0);
    st.s = splitmix32(st) ^ stream;
    super(st);
  }

  /** Uniform in (0, 1): never 0, so log() is safe. */
  nextOpen(): number {
    return ((this.nextU32() >>> 8) + 0.5) / 16777216;
  }

  /** Fills out with N(0, std^2) samples. */
  fillNormal(out: Float32Array, std: number, mean = 0): void {
    for (let i = 0; i < out.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(this.nextOpen())) * std;
      const th = 2 * Math.PI * this.nextOpen();
      out[i] = mean + r * Math.cos(th);
      if (i + 1 < out.length) out[i + 1] = mean + r * Math.sin(th);
    }
  }
}


function randomTensor(seed: number, name: string, n: number, std: number, mean = 0): Float32Array {
  const out = new Float32Array(n);
  new Xoshiro128(seed, hashString(name)).fillNormal(out, std, mean);
  return out;
}

// ---------------------------------------------------------------------------------------------

function checkOptions(o: MakeModelOptions): void {
  if (!Object.prototype.hasOwnProperty.call(PRESETS, o.preset)) throw new RangeError(`unknown preset '${o.preset}' (tiny, small, 42m, 110m, 8b)`);
  if (!isWeightFormat(o.dtype)) throw new RangeError(`unknown dtype '${o.dtype}' (${[...Object.keys(DTYPE_INFO), ...QUANT_MIXES].join(', ')})`);
  if (!Number.isSafeInteger(o.seed)) throw new RangeError(`seed must be an integer, got ${o.seed}`);
  if (o.arch && !isArchitecture(o.arch.arch)) throw new RangeError(`unknown architecture '${o.arch.arch}' (${ARCHITECTURES.join(', ')})`);
  if (o.headDim !== undefined && (!Number.isInteger(o.headDim) || o.headDim < 2 || o.headDim % 2 !== 0)) {
    throw new RangeError(`head width must be an even integer >= 2, got ${o.headDim}`);
  }
  if (o.nKvHeads !== undefined) {
    const nHeads = PRESETS[o.preset].nHeads;
    if (!Number.isInteger(o.nKvHeads) || o.nKvHeads < 1 || nHeads % o.nKvHeads !== 0) {
      throw new RangeError(`kv heads must divide the preset's ${nHeads} heads, got ${o.nKvHeads}`);
    }
  }
}

export async function makeModel(opts: MakeModelOptions): Promise<MakeModelSummary> {
  checkOptions(opts);
  if (opts.vocab && opts.tokenizer) throw new RangeError('give a llama2.c vocabulary or a Hugging Face tokenizer, not both');
  const tokenizer = opts.tokenizer ? ggufTokenizerFromHf(opts.tokenizer) : undefined;
  const vocab: SpmVocab | GgufTokenizer = tokenizer ??
    (opts.vocab
      ? (() => {
          const v = readLlama2cVocab(opts.vocab);
          return spmVocabFromLlama2c(v.pieces, v.scores);
        })()
      : syntheticVocab(PRESETS[opts.preset].vocabSize));
  const shape: PresetShape = {
    ...PRESETS[opts.preset],
    vocabSize: 'pieces' in vocab ? vocab.pieces.length : vocab.vocabSize,
    ...(opts.tied !== undefined ? { tied: opts.tied } : {}),
    ...(opts.nKvHeads !== undefined ? { nKvHeads: opts.nKvHeads } : {}),
    ...(opts.headDim !== undefined ? { headDim: opts.headDim } : {}),
  };
  const arch = opts.arch?.arch ?? 'llama';
  const { spec, summary } = modelSpec({
    shape, dtype: opts.dtype, seed: opts.seed, vocab, arch: opts.arch,
    name: `stepwise-${arch === 'llama' ? '' : arch + '-'}${opts.preset}-${opts.dtype}-seed${opts.seed}`,
  });
  // Like any tool that writes a file, create its folder (`--out models/x.gguf` on a fresh clone).
  mkdirSync(dirname(resolve(opts.out)), { recursive: true });
  writeGgufFile(opts.out, spec);
  return { path: opts.out, ...summary };
}

/**
 * The GGUF contents of a random model of any shape (tensor data generated lazily, as the writer
 * reaches each tensor). makeModel() is this plus presets, a vocabulary and a file.
 */
export function modelSpec(o: { shape: PresetShape; dtype: WeightFormat; seed: number; vocab: SpmVocab | GgufTokenizer; name: string; arch?: ArchOptions }): {
  spec: GgufSpec;
  summary: Omit<MakeModelSummary, 'path'>;
} {
  const { shape, vocab, seed } = o;
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize } = shape;
  const vocabPieces = 'pieces' in vocab ? vocab.pieces.length : vocab.vocabSize;
  if (vocabPieces !== vocabSize) throw new RangeError(`vocabulary of ${vocabPieces} pieces for a model of vocab ${vocabSize}`);
  if ((shape.headDim === undefined && dim % nHeads !== 0) || nHeads % nKvHeads !== 0) {
    throw new RangeError(`bad head layout: dim ${dim}, ${nHeads} heads, ${nKvHeads} kv heads`);
  }
  const headDim = shape.headDim ?? dim / nHeads;
  const arch = o.arch?.arch ?? 'llama';
  const family = FAMILIES[arch];

  const tensors: GgufTensorSpec[] = [];
  const tensorsByDtype: Partial<Record<DType, number>> = {};
  let params = 0;
  let bytes = 0;
  const matrix = (name: string, rows: number, cols: number, std: number): void => {
    const dtype = storageDtype(mixDtype(o.dtype, name, nLayers), cols);
    tensorsByDtype[dtype] = (tensorsByDtype[dtype] ?? 0) + 1;
    params += rows * cols;
    bytes += (rows * cols / DTYPE_INFO[dtype].blockSize) * DTYPE_INFO[dtype].blockBytes;
    tensors.push({
      name,
      type: dtype,
      dims: [cols, rows],
      data: () => {
        // Big matrices repeat a block of TILE_ROWS random rows: an 8B model's 8 billion normals and
        // their quantization would take many minutes in TypeScript. Every tensor still has its own
        // rows, and the statistics each row sees are the same; only rows TILE_ROWS apart repeat.
        const tiled = rows * cols > TILE_ABOVE;
        const genRows = tiled ? TILE_ROWS : rows;
        const values = randomTensor(seed, name, genRows * cols, std);
        const block = dtype === 'f32' ? new Uint8Array(values.buffer) : quantize(dtype, values, genRows, cols);
        if (!tiled) return block;
        const out = new Uint8Array((block.byteLength / genRows) * rows);
        for (let off = 0; off < out.byteLength; off += block.byteLength) out.set(block.subarray(0, Math.min(block.byteLength, out.byteLength - off)), off);
        return out;
      },
    });
  };
  const vectorOf = (name: string, width: number, values: () => Float32Array): void => {
    tensorsByDtype.f32 = (tensorsByDtype.f32 ?? 0) + 1;
    params += width;
    bytes += width * 4;
    tensors.push({ name, type: 'f32', dims: [width], data: () => new Uint8Array(values().buffer) });
  };
  const norm = (name: string, scale = 1, width = dim): void =>
    vectorOf(name, width, () => randomTensor(seed, name, width, NORM_JITTER * scale, scale));

  const branchScale = 1 / Math.sqrt(2 * nLayers);
  const unit = 1 / Math.sqrt(dim);
  matrix('token_embd.weight', vocabSize, dim, EMBED_SCALE * unit);
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    norm(`${p}attn_norm.weight`);
    matrix(`${p}attn_q.weight`, nHeads * headDim, dim, Math.SQRT2 * unit);
    matrix(`${p}attn_k.weight`, nKvHeads * headDim, dim, Math.SQRT2 * unit);
    matrix(`${p}attn_v.weight`, nKvHeads * headDim, dim, unit);
    matrix(`${p}attn_output.weight`, dim, nHeads * headDim, branchScale / Math.sqrt(nHeads * headDim));
    if (family.qkvBias === 'required') {
      // Biases of about half the projections' unit scale: large enough to matter in every score.
      for (const [name, width] of [['attn_q.bias', nHeads * headDim], ['attn_k.bias', nKvHeads * headDim], ['attn_v.bias', nKvHeads * headDim]] as const) {
        vectorOf(p + name, width, () => randomTensor(seed, p + name, width, 0.5));
      }
    }
    if (family.qkNorm) {
      // q and k come out of their norms with unit RMS per head; a gain of 1.5 keeps scores spread
      // (std ~2 at any head width), so attention stays selective as in the plain Llama layout.
      norm(`${p}attn_q_norm.weight`, 1.5, headDim);
      norm(`${p}attn_k_norm.weight`, 1.5, headDim);
    }
    if (family.postNorms) norm(`${p}post_attention_norm.weight`, branchScale);
    norm(`${p}ffn_norm.weight`);
    matrix(`${p}ffn_gate.weight`, hiddenDim, dim, unit);
    matrix(`${p}ffn_up.weight`, hiddenDim, dim, unit);
    matrix(`${p}ffn_down.weight`, dim, hiddenDim, branchScale / Math.sqrt(hiddenDim));
    if (family.postNorms) norm(`${p}post_ffw_norm.weight`, branchScale);
  }
  if (o.arch?.ropeFreqs) vectorOf('rope_freqs.weight', headDim / 2, () => llama31RopeFactors(headDim, o.arch?.ropeTheta ?? 500000));
  // Logits = W_out . (normed x), x with unit RMS: std(W_out) * sqrt(dim) * norm weight per logit.
  if (shape.tied) {
    norm('output_norm.weight', LOGIT_STD / EMBED_SCALE);
  } else {
    norm('output_norm.weight');
    matrix('output.weight', vocabSize, dim, LOGIT_STD * unit);
  }

  const quantized = o.dtype !== 'f32' && o.dtype !== 'f16' && o.dtype !== 'bf16';
  const ropeTheta = o.arch?.ropeTheta ?? (o.arch?.ropeFreqs ? 500000 : DEFAULT_ROPE_THETA[arch]);
  const a = (key: string) => `${arch}.${key}`;
  const metadata: Array<[string, GgufTypedValue]> = [
    ['general.architecture', ggufValue.string(arch)],
    ['general.name', ggufValue.string(o.name)],
    ['general.file_type', ggufValue.u32(FILE_TYPE[o.dtype])],
    ...(quantized ? [['general.quantization_version', ggufValue.u32(2)] as [string, GgufTypedValue]] : []),
    [a('vocab_size'), ggufValue.u32(vocabSize)],
    [a('context_length'), ggufValue.u32(shape.contextLength)],
    [a('embedding_length'), ggufValue.u32(dim)],
    [a('block_count'), ggufValue.u32(nLayers)],
    [a('feed_forward_length'), ggufValue.u32(hiddenDim)],
    [a('rope.dimension_count'), ggufValue.u32(headDim)],
    [a('rope.freq_base'), ggufValue.f32(ropeTheta)],
    [a('attention.head_count'), ggufValue.u32(nHeads)],
    [a('attention.head_count_kv'), ggufValue.u32(nKvHeads)],
    [a('attention.layer_norm_rms_epsilon'), ggufValue.f32(1e-5)],
    ...(headDim !== dim / nHeads || arch !== 'llama'
      ? ([[a('attention.key_length'), ggufValue.u32(headDim)], [a('attention.value_length'), ggufValue.u32(headDim)]] as Array<[string, GgufTypedValue]>)
      : []),
    ...(family.slidingWindow ? [[a('attention.sliding_window'), ggufValue.u32(o.arch?.slidingWindow ?? 512)] as [string, GgufTypedValue]] : []),
    ...('pieces' in vocab ? spmTokenizerMetadata(vocab) : vocab.metadata),
  ];
  return { spec: { metadata, tensors }, summary: { params, bytes, tensorsByDtype, shape } };
}

/** The tokenizer.* keys of a SentencePiece vocabulary with <unk>, <s>, </s> at ids 0, 1, 2. */
function spmTokenizerMetadata(vocab: SpmVocab): Array<[string, GgufTypedValue]> {
  return [
    ['tokenizer.ggml.model', ggufValue.string('llama')],
    ['tokenizer.ggml.tokens', ggufValue.array('string', vocab.pieces)],
    ['tokenizer.ggml.scores', ggufValue.array('f32', vocab.scores)],
    ['tokenizer.ggml.token_type', ggufValue.array('i32', vocab.tokenTypes)],
    ['tokenizer.ggml.bos_token_id', ggufValue.u32(1)],
    ['tokenizer.ggml.eos_token_id', ggufValue.u32(2)],
    ['tokenizer.ggml.unknown_token_id', ggufValue.u32(0)],
    ['tokenizer.ggml.add_bos_token', ggufValue.bool(true)],
    ['tokenizer.ggml.add_eos_token', ggufValue.bool(false)],
  ];
}

/**
 * Llama 3.1's RoPE frequency factors as its converter computes them (factor 8, low/high frequency
 * factors 1 and 4, original context 8192): high frequencies keep their speed, low ones turn 8x
 * slower, the band between is interpolated.
 */
export function llama31RopeFactors(headDim: number, theta: number): Float32Array {
  const factor = 8;
  const lowFreqFactor = 1;
  const highFreqFactor = 4;
  const oldContext = 8192;
  const lowWavelen = oldContext / lowFreqFactor;
  const highWavelen = oldContext / highFreqFactor;
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) {
    const freq = 1 / theta ** ((2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (oldContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}
