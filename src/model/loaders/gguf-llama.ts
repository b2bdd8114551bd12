// Maps a GGUF file of architecture 'llama' onto ModelConfig and LlamaWeights. Tensor names follow
// llama.cpp: token_embd, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,
// ffn_down}, output_norm, output (absent when the classifier is tied to the embedding), each with a
// ".weight" suffix. A matrix's ne = [cols, rows], so ne[0] is the input width.

import type { ModelConfig } from '../config.js';
import type { LayerWeights, LlamaWeights, WeightTensor } from '../weights.js';
import { dequantize } from '../quant.js';
import { ModelFileError } from './errors.js';
import type { GgufFile, GgufHeader, GgufTensorInfo, GgufValue } from './gguf.js';

function positiveInt(meta: Record<string, GgufValue>, key: string, path: string, fallback?: number): number {
  const v = meta[key];
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new ModelFileError(path, `GGUF metadata lacks '${key}'`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelFileError(path, `GGUF metadata '${key}' must be a positive integer, got ${Array.isArray(v) ? 'an array' : String(v)}`);
  }
  return v;
}

function positiveNumber(meta: Record<string, GgufValue>, key: string, path: string, fallback: number): number {
  const v = meta[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new ModelFileError(path, `GGUF metadata '${key}' must be a positive number, got ${Array.isArray(v) ? 'an array' : String(v)}`);
  }
  return v;
}

/** The model's configuration from metadata and tensor shapes, after checking every tensor it needs. */
export function llamaConfigFromGguf(header: GgufHeader): ModelConfig {
  const { metadata: meta, path } = header;
  const arch = meta['general.architecture'];
  if (arch === undefined) throw new ModelFileError(path, `GGUF metadata lacks 'general.architecture'`);
  if (arch !== 'llama') throw new ModelFileError(path, `unsupported model architecture '${String(arch)}' (only 'llama' is supported)`);
  const scaling = meta['llama.rope.scaling.type'];
  if (scaling !== undefined && scaling !== 'none') throw new ModelFileError(path, `unsupported RoPE scaling '${String(scaling)}'`);

  const dim = positiveInt(meta, 'llama.embedding_length', path);
  const nHeads = positiveInt(meta, 'llama.attention.head_count', path);
  if (!meta['llama.attention.key_length'] && dim % nHeads !== 0) {
    throw new ModelFileError(path, `embedding_length ${dim} is not a multiple of head_count ${nHeads}`);
  }
  const headDim = positiveInt(meta, 'llama.attention.key_length', path, dim / nHeads);
  const embd = header.tensorInfos.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new ModelFileError(path, `GGUF file has no tensor 'token_embd.weight'`);
  const config: ModelConfig = {
    arch: 'llama',
    dim,
    hiddenDim: positiveInt(meta, 'llama.feed_forward_length', path),
    nLayers: positiveInt(meta, 'llama.block_count', path),
    nHeads,
    nKvHeads: positiveInt(meta, 'llama.attention.head_count_kv', path, nHeads),
    headDim,
    vocabSize: embd.dims[1] ?? 1,
    contextLength: positiveInt(meta, 'llama.context_length', path),
    ropeTheta: positiveNumber(meta, 'llama.rope.freq_base', path, 10000),
    ropeDim: positiveInt(meta, 'llama.rope.dimension_count', path, headDim),
    normEps: positiveNumber(meta, 'llama.attention.layer_norm_rms_epsilon', path, 1e-5),
    tiedEmbeddings: !header.tensorInfos.some((t) => t.name === 'output.weight'),
  };
  const v = meta['llama.attention.value_length'];
  if (v !== undefined && v !== headDim) throw new ModelFileError(path, `llama.attention.value_length ${String(v)} differs from key_length ${headDim} (unsupported)`);
  if (config.nHeads % config.nKvHeads !== 0) {
    throw new ModelFileError(path, `head_count ${config.nHeads} is not a multiple of head_count_kv ${config.nKvHeads}`);
  }
  if (config.ropeDim > headDim || config.ropeDim % 2 !== 0) {
    throw new ModelFileError(path, `rope.dimension_count ${config.ropeDim} must be even and at most the head width ${headDim}`);
  }
  if (header.tensorInfos.some((t) => t.name === 'rope_freqs.weight')) {
    throw new ModelFileError(path, `tensor 'rope_freqs.weight' (Llama 3.1 RoPE frequency scaling) is not supported`);
  }
  for (const [name, shape] of expectedShapes(config)) checkShape(header, name, shape);
  return config;
}

/** Every tensor the model needs with its ne (input width first). */
function expectedShapes(c: ModelConfig): Array<[string, number[]]> {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const s: Array<[string, number[]]> = [['token_embd.weight', [c.dim, c.vocabSize]]];
  for (let l = 0; l < c.nLayers; l++) {
    s.push(
      [`blk.${l}.attn_norm.weight`, [c.dim]],
      [`blk.${l}.attn_q.weight`, [c.dim, q]],
      [`blk.${l}.attn_k.weight`, [c.dim, kv]],
      [`blk.${l}.attn_v.weight`, [c.dim, kv]],
      [`blk.${l}.attn_output.weight`, [q, c.dim]],
      [`blk.${l}.ffn_norm.weight`, [c.dim]],
      [`blk.${l}.ffn_gate.weight`, [c.dim, c.hiddenDim]],
      [`blk.${l}.ffn_up.weight`, [c.dim, c.hiddenDim]],
      [`blk.${l}.ffn_down.weight`, [c.hiddenDim, c.dim]],
    );
  }
  s.push(['output_norm.weight', [c.dim]]);
  if (!c.tiedEmbeddings) s.push(['output.weight', [c.dim, c.vocabSize]]);
  return s;
}

function checkShape(header: GgufHeader, name: string, shape: number[]): GgufTensorInfo {
  const t = header.tensorInfos.find((x) => x.name === name);
  if (!t) throw new ModelFileError(header.path, `GGUF file has no tensor '${name}'`);
  // Trailing dimensions of 1 are the same shape.
  const dims = [...t.dims];
  while (dims.length > shape.length && dims.at(-1) === 1) dims.pop();
  if (dims.length !== shape.length || dims.some((d, i) => d !== shape[i])) {
    throw new ModelFileError(header.path, `tensor '${name}' has shape [${t.dims.join(', ')}], expected [${shape.join(', ')}] for this model's configuration`);
  }
  return t;
}

export function llamaWeightsFromGguf(file: GgufFile, config: ModelConfig): LlamaWeights {
  const get = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new ModelFileError(file.path, `GGUF file has no tensor '${name}'`);
    return t;
  };
  const matrix = (name: string): WeightTensor => {
    const t = get(name);
    return { name, dtype: t.dtype, rows: t.dims[1] ?? 1, cols: t.dims[0]!, data: t.data };
  };
  // Norm weights are small and read on every token: always plain float32.
  const vector = (name: string): Float32Array => {
    const t = get(name);
    if (t.dtype === 'f32' && t.data.byteOffset % 4 === 0) return new Float32Array(t.data.buffer, t.data.byteOffset, t.dims[0]!);
    return dequantize({ name, dtype: t.dtype, rows: 1, cols: t.dims[0]!, data: t.data });
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `blk.${l}.`;
    layers.push({
      attnNorm: vector(`${p}attn_norm.weight`),
      wq: matrix(`${p}attn_q.weight`),
      wk: matrix(`${p}attn_k.weight`),
      wv: matrix(`${p}attn_v.weight`),
      wo: matrix(`${p}attn_output.weight`),
      ffnNorm: vector(`${p}ffn_norm.weight`),
      wGate: matrix(`${p}ffn_gate.weight`),
      wUp: matrix(`${p}ffn_up.weight`),
      wDown: matrix(`${p}ffn_down.weight`),
    });
  }
  const tokenEmbedding = matrix('token_embd.weight');
  return {
    tokenEmbedding,
    layers,
    outputNorm: vector('output_norm.weight'),
    output: config.tiedEmbeddings ? tokenEmbedding : matrix('output.weight'),
  };
}
