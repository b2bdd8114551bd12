// Loader for Karpathy's llama2.c legacy checkpoints (`.bin`, all float32, little-endian):
//
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//   token_embedding [vocab][dim]
//   rms_att [L][dim] | wq [L][dim][dim] | wk [L][kv_dim][dim] | wv [L][kv_dim][dim] | wo [L][dim][dim]
//   rms_ffn [L][dim] | w1 [L][hidden][dim] | w2 [L][dim][hidden] | w3 [L][hidden][dim]
//   rms_final [dim] | freq_cis_real [seq_len][head/2] | freq_cis_imag [seq_len][head/2]
//   wcls [vocab][dim]   only when vocab_size was negative (an untied classifier)
//
// Each matrix is [out][in] row-major, which is exactly WeightTensor's layout, so weights are views
// into the file's buffer. w1 is the gate, w3 the up projection, w2 the down projection. The freq_cis
// tables are skipped: RoPE is recomputed from theta 10000.

import type { ModelConfig } from '../config.js';
import type { LayerWeights, LlamaWeights, WeightTensor } from '../weights.js';
import { ModelFileError } from './errors.js';

export const LLAMA2C_HEADER_BYTES = 28;

/** The configuration in a checkpoint's 28-byte header, checked against the file's size. */
export function llama2cConfigFromHeader(header: Uint8Array, fileSize: number, path: string): ModelConfig {
  if (header.byteLength < LLAMA2C_HEADER_BYTES) {
    throw new ModelFileError(path, `not a model file (GGUF or llama2.c checkpoint): only ${fileSize} bytes`);
  }
  const dv = new DataView(header.buffer, header.byteOffset, LLAMA2C_HEADER_BYTES);
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabField, seqLen] = Array.from({ length: 7 }, (_, i) => dv.getInt32(4 * i, true)) as [
    number, number, number, number, number, number, number,
  ];
  const vocabSize = Math.abs(vocabField);
  const fields = `dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, vocab_size ${vocabField}, seq_len ${seqLen}`;
  const sane =
    dim > 0 && hiddenDim > 0 && nLayers > 0 && nHeads > 0 && nKvHeads > 0 && vocabSize > 0 && seqLen > 0 &&
    dim <= 1 << 16 && hiddenDim <= 1 << 18 && nLayers <= 1024 && nHeads <= dim && vocabSize <= 1 << 22 && seqLen <= 1 << 22 &&
    dim % nHeads === 0 && nHeads % nKvHeads === 0 && (dim / nHeads) % 2 === 0;
  if (!sane) {
    const magic = [...header.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new ModelFileError(
      path,
      `not a model file: not GGUF (magic bytes ${magic}, expected 47 47 55 46 "GGUF") and not a llama2.c checkpoint (header would read ${fields})`,
    );
  }
  const headDim = dim / nHeads;
  const config: ModelConfig = {
    arch: 'llama',
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    contextLength: seqLen,
    ropeTheta: 10000,
    ropeDim: headDim,
    normEps: 1e-5,
    tiedEmbeddings: vocabField > 0,
  };
  const expected = llama2cFileSize(config);
  if (fileSize !== expected) {
    const what = fileSize < expected ? 'truncated llama2.c checkpoint' : 'not a valid llama2.c checkpoint';
    throw new ModelFileError(path, `${what}: a header of ${fields} needs ${expected} bytes, the file has ${fileSize}`);
  }
  return config;
}

/** Floats of each section, in file order. */
function sections(c: ModelConfig): Array<[name: string, floats: number]> {
  const kvDim = c.nKvHeads * c.headDim;
  const qDim = c.nHeads * c.headDim;
  const L = c.nLayers;
  const s: Array<[string, number]> = [
    ['token_embedding', c.vocabSize * c.dim],
    ['rms_att', L * c.dim],
    ['wq', L * qDim * c.dim],
    ['wk', L * kvDim * c.dim],
    ['wv', L * kvDim * c.dim],
    ['wo', L * c.dim * qDim],
    ['rms_ffn', L * c.dim],
    ['w1', L * c.hiddenDim * c.dim],
    ['w2', L * c.dim * c.hiddenDim],
    ['w3', L * c.hiddenDim * c.dim],
    ['rms_final', c.dim],
    ['freq_cis_real', (c.contextLength * c.headDim) / 2],
    ['freq_cis_imag', (c.contextLength * c.headDim) / 2],
  ];
  if (!c.tiedEmbeddings) s.push(['wcls', c.vocabSize * c.dim]);
  return s;
}

export function llama2cFileSize(c: ModelConfig): number {
  return LLAMA2C_HEADER_BYTES + 4 * sections(c).reduce((a, [, n]) => a + n, 0);
}

/** A float32 vector at a byte offset: a view when aligned, else a copy. */
function f32Vector(bytes: Uint8Array, offset: number, n: number): Float32Array {
  const at = bytes.byteOffset + offset;
  if (at % 4 === 0) return new Float32Array(bytes.buffer, at, n);
  return new Float32Array(bytes.slice(offset, offset + 4 * n).buffer);
}

export function parseLlama2c(bytes: Uint8Array, path = '<buffer>'): { config: ModelConfig; weights: LlamaWeights } {
  const config = llama2cConfigFromHeader(bytes.subarray(0, LLAMA2C_HEADER_BYTES), bytes.byteLength, path);
  const start = new Map<string, number>();
  let off = LLAMA2C_HEADER_BYTES;
  for (const [name, floats] of sections(config)) {
    start.set(name, off);
    off += 4 * floats;
  }
  const { dim, hiddenDim, nLayers } = config;
  const qDim = config.nHeads * config.headDim;
  const kvDim = config.nKvHeads * config.headDim;

  // Layer l's slice of a stacked [L][rows][cols] section.
  const matrix = (section: string, name: string, l: number, rows: number, cols: number): WeightTensor => {
    const at = start.get(section)! + 4 * l * rows * cols;
    return { name, dtype: 'f32', rows, cols, data: bytes.subarray(at, at + 4 * rows * cols) };
  };
  const vector = (section: string, l: number): Float32Array => f32Vector(bytes, start.get(section)! + 4 * l * dim, dim);

  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) {
    layers.push({
      attnNorm: vector('rms_att', l),
      wq: matrix('wq', `layers.${l}.wq`, l, qDim, dim),
      wk: matrix('wk', `layers.${l}.wk`, l, kvDim, dim),
      wv: matrix('wv', `layers.${l}.wv`, l, kvDim, dim),
      wo: matrix('wo', `layers.${l}.wo`, l, dim, qDim),
      ffnNorm: vector('rms_ffn', l),
      wGate: matrix('w1', `layers.${l}.w1`, l, hiddenDim, dim),
      wDown: matrix('w2', `layers.${l}.w2`, l, dim, hiddenDim),
      wUp: matrix('w3', `layers.${l}.w3`, l, hiddenDim, dim),
    });
  }
  const tokenEmbedding = matrix('token_embedding', 'token_embedding', 0, config.vocabSize, dim);
  const output = config.tiedEmbeddings ? tokenEmbedding : matrix('wcls', 'wcls', 0, config.vocabSize, dim);
  return { config, weights: { tokenEmbedding, layers, outputNorm: vector('rms_final', 0), output } };
}
