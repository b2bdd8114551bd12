// Maps a GGUF file onto ModelConfig and model weights, for every architecture in families.ts.
// Tensor names and metadata keys follow llama.cpp: token_embd, blk.N.{attn_norm, attn_q, attn_k,
// attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (absent when the
// classifier is tied to the embedding), each with a ".weight" suffix; family extras are
// attn_{q,k,v,output}.bias, attn_{q,k}_norm, post_attention_norm, post_ffw_norm and rope_freqs.
// Metadata keys carry the architecture as prefix ("qwen3.embedding_length"). A matrix's
// ne = [cols, rows], so ne[0] is the input width.

import type { ModelConfig } from '../config.js';
import { ARCHITECTURES, FAMILIES, isArchitecture, type Architecture, type FamilyTraits } from '../families.js';
import type { LayerWeights, LlamaWeights, WeightTensor } from '../weights.js';
import { dequantize } from '../kernels/quant.js';
import { ModelFileError } from './errors.js';
import type { GgufFile, GgufHeader, GgufTensorInfo, GgufValue } from './gguf.js';

type Meta = Record<string, GgufValue>;

function positiveInt(meta: Meta, key: string, path: string, fallback?: number): number {
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

function optionalNumber(meta: Meta, key: string, path: string): number | undefined {
  const v = meta[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new ModelFileError(path, `GGUF metadata '${key}' must be a non-negative number, got ${Array.isArray(v) ? 'an array' : String(v)}`);
  }
  return v;
}

function positiveNumber(meta: Meta, key: string, path: string, fallback: number): number {
  const v = optionalNumber(meta, key, path);
  if (v === undefined) return fallback;
  if (!(v > 0)) throw new ModelFileError(path, `GGUF metadata '${key}' must be a positive number, got ${v}`);
  return v;
}

function architectureOf(header: GgufHeader): Architecture {
  const arch = header.metadata['general.architecture'];
  if (arch === undefined) throw new ModelFileError(header.path, `GGUF metadata lacks 'general.architecture'`);
  if (!isArchitecture(arch)) {
    throw new ModelFileError(header.path, `unsupported model architecture '${String(arch)}' (supported: ${ARCHITECTURES.join(', ')})`);
  }
  return arch;
}

/**
 * Linear RoPE scaling as llama.cpp reads it: `rope.scaling.factor` (or the older
 * `rope.scale_linear`) f makes positions advance 1/f as fast. YaRN and LongRoPE change the
 * frequencies per dimension and are refused rather than silently computed wrong.
 */
function ropeFreqScale(meta: Meta, arch: Architecture, path: string): number {
  const type = meta[`${arch}.rope.scaling.type`];
  if (type !== undefined && type !== 'none' && type !== 'linear') {
    throw new ModelFileError(path, `unsupported RoPE scaling '${String(type)}' (${arch}.rope.scaling.type; supported: none, linear)`);
  }
  const factor = optionalNumber(meta, `${arch}.rope.scaling.factor`, path) ?? optionalNumber(meta, `${arch}.rope.scale_linear`, path) ?? 0;
  return factor === 0 ? 1 : 1 / factor;
}

/** The model's configuration from metadata and tensor shapes, after checking every tensor it needs. */
export function modelConfigFromGguf(header: GgufHeader): ModelConfig {
  const { metadata: meta, path } = header;
  const arch = architectureOf(header);
  const family = FAMILIES[arch];
  const key = (k: string) => `${arch}.${k}`;

  const dim = positiveInt(meta, key('embedding_length'), path);
  const nHeads = positiveInt(meta, key('attention.head_count'), path);
  if (!meta[key('attention.key_length')] && dim % nHeads !== 0) {
    throw new ModelFileError(path, `embedding_length ${dim} is not a multiple of head_count ${nHeads}`);
  }
  const headDim = positiveInt(meta, key('attention.key_length'), path, dim / nHeads);
  const embd = header.tensorInfos.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new ModelFileError(path, `GGUF file has no tensor 'token_embd.weight'`);
  const nLayers = positiveInt(meta, key('block_count'), path);
  const config: ModelConfig = {
    arch,
    dim,
    hiddenDim: positiveInt(meta, key('feed_forward_length'), path),
    nLayers,
    nHeads,
    nKvHeads: positiveInt(meta, key('attention.head_count_kv'), path, nHeads),
    headDim,
    vocabSize: embd.dims[1] ?? 1,
    contextLength: positiveInt(meta, key('context_length'), path),
    ropeTheta: positiveNumber(meta, key('rope.freq_base'), path, 10000),
    ropeDim: positiveInt(meta, key('rope.dimension_count'), path, headDim),
    normEps: positiveNumber(meta, key('attention.layer_norm_rms_epsilon'), path, 1e-5),
    tiedEmbeddings: !header.tensorInfos.some((t) => t.name === 'output.weight'),
  };
  const freqScale = ropeFreqScale(meta, arch, path);
  if (freqScale !== 1) config.ropeFreqScale = freqScale;
  if (family.slidingWindow) {
    const window = optionalNumber(meta, key('attention.sliding_window'), path);
    if (window !== undefined && window > 0) {
      if (!Number.isInteger(window)) throw new ModelFileError(path, `GGUF metadata '${key('attention.sliding_window')}' must be an integer, got ${window}`);
      config.slidingWindow = window;
    }
  }
  if (arch === 'gemma3') {
    // llama.cpp: 1/sqrt(head width), except Gemma 3 27B (62 layers), which scales by dim/heads.
    config.attentionScale = Math.fround(1 / Math.sqrt(nLayers === 62 ? Math.floor(dim / nHeads) : headDim));
  }
  const cap = optionalNumber(meta, key('final_logit_softcapping'), path);
  if (cap) config.finalLogitSoftcap = cap;

  const v = meta[key('attention.value_length')];
  if (v !== undefined && v !== headDim) throw new ModelFileError(path, `${key('attention.value_length')} ${String(v)} differs from key_length ${headDim} (unsupported)`);
  if (config.nHeads % config.nKvHeads !== 0) {
    throw new ModelFileError(path, `head_count ${config.nHeads} is not a multiple of head_count_kv ${config.nKvHeads}`);
  }
  if (config.ropeDim > headDim || config.ropeDim % 2 !== 0) {
    throw new ModelFileError(path, `rope.dimension_count ${config.ropeDim} must be even and at most the head width ${headDim}`);
  }
  for (const [name, shape] of expectedShapes(config, family, header)) checkShape(header, name, shape);
  return config;
}

/** Every tensor the model reads with its ne (input width first): the family's required ones, and optional ones the file has. */
function expectedShapes(c: ModelConfig, family: FamilyTraits, header: GgufHeader): Array<[string, number[]]> {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const has = (name: string) => header.tensorInfos.some((t) => t.name === name);
  const s: Array<[string, number[]]> = [['token_embd.weight', [c.dim, c.vocabSize]]];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    s.push(
      [`${p}attn_norm.weight`, [c.dim]],
      [`${p}attn_q.weight`, [c.dim, q]],
      [`${p}attn_k.weight`, [c.dim, kv]],
      [`${p}attn_v.weight`, [c.dim, kv]],
      [`${p}attn_output.weight`, [q, c.dim]],
      [`${p}ffn_norm.weight`, [c.dim]],
      [`${p}ffn_gate.weight`, [c.dim, c.hiddenDim]],
      [`${p}ffn_up.weight`, [c.dim, c.hiddenDim]],
      [`${p}ffn_down.weight`, [c.hiddenDim, c.dim]],
    );
    for (const [name, width] of [['attn_q.bias', q], ['attn_k.bias', kv], ['attn_v.bias', kv]] as const) {
      if (family.qkvBias === 'required' || (family.qkvBias === 'optional' && has(p + name))) s.push([p + name, [width]]);
    }
    if (family.qkvBias === 'optional' && has(`${p}attn_output.bias`)) s.push([`${p}attn_output.bias`, [c.dim]]);
    if (family.qkNorm) s.push([`${p}attn_q_norm.weight`, [c.headDim]], [`${p}attn_k_norm.weight`, [c.headDim]]);
    if (family.postNorms) s.push([`${p}post_attention_norm.weight`, [c.dim]], [`${p}post_ffw_norm.weight`, [c.dim]]);
  }
  s.push(['output_norm.weight', [c.dim]]);
  if (!c.tiedEmbeddings) s.push(['output.weight', [c.dim, c.vocabSize]]);
  if (has('rope_freqs.weight')) s.push(['rope_freqs.weight', [c.ropeDim / 2]]);
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

export function modelWeightsFromGguf(file: GgufFile, config: ModelConfig): LlamaWeights {
  const family = FAMILIES[config.arch];
  const get = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new ModelFileError(file.path, `GGUF file has no tensor '${name}'`);
    return t;
  };
  const matrix = (name: string): WeightTensor => {
    const t = get(name);
    return { name, dtype: t.dtype, rows: t.dims[1] ?? 1, cols: t.dims[0]!, data: t.data };
  };
  // Norm weights and biases are small and read on every token: always plain float32.
  const vector = (name: string): Float32Array => {
    const t = get(name);
    if (t.dtype === 'f32' && t.data.byteOffset % 4 === 0) return new Float32Array(t.data.buffer, t.data.byteOffset, t.dims[0]!);
    return dequantize({ name, dtype: t.dtype, rows: 1, cols: t.dims[0]!, data: t.data });
  };
  const optionalVector = (name: string): Float32Array | undefined => (file.tensors.has(name) ? vector(name) : undefined);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `blk.${l}.`;
    const lw: LayerWeights = {
      attnNorm: vector(`${p}attn_norm.weight`),
      wq: matrix(`${p}attn_q.weight`),
      wk: matrix(`${p}attn_k.weight`),
      wv: matrix(`${p}attn_v.weight`),
      wo: matrix(`${p}attn_output.weight`),
      ffnNorm: vector(`${p}ffn_norm.weight`),
      wGate: matrix(`${p}ffn_gate.weight`),
      wUp: matrix(`${p}ffn_up.weight`),
      wDown: matrix(`${p}ffn_down.weight`),
    };
    if (family.qkvBias !== 'none') {
      lw.bq = optionalVector(`${p}attn_q.bias`);
      lw.bk = optionalVector(`${p}attn_k.bias`);
      lw.bv = optionalVector(`${p}attn_v.bias`);
      lw.bo = optionalVector(`${p}attn_output.bias`);
    }
    if (family.qkNorm) {
      lw.qNorm = vector(`${p}attn_q_norm.weight`);
      lw.kNorm = vector(`${p}attn_k_norm.weight`);
    }
    if (family.postNorms) {
      lw.attnPostNorm = vector(`${p}post_attention_norm.weight`);
      lw.ffnPostNorm = vector(`${p}post_ffw_norm.weight`);
    }
    layers.push(lw);
  }
  const tokenEmbedding = matrix('token_embd.weight');
  const weights: LlamaWeights = {
    tokenEmbedding,
    layers,
    outputNorm: vector('output_norm.weight'),
    output: config.tiedEmbeddings ? tokenEmbedding : matrix('output.weight'),
  };
  const ropeFreqs = optionalVector('rope_freqs.weight');
  if (ropeFreqs) weights.ropeFreqFactors = ropeFreqs;
  return weights;
}
