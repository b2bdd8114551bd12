// Converts a Hugging Face tokenizer (a folder with tokenizer.json and tokenizer_config.json) into
// the GGUF tokenizer metadata llama.cpp's converter (convert_hf_to_gguf.py) would write for it, so
// `make-model --tokenizer DIR` gives a random-weight model the real vocabulary, merges, special
// tokens and chat template of a family. Two kinds are read:
//
// - byte-level BPE (a ByteLevel pre-tokenizer: Llama 3, Qwen, SmolLM): tokenizer.ggml.model "gpt2",
//   the vocabulary and merges as they are, and tokenizer.ggml.pre named after the split regex the
//   tokenizer uses (llama.cpp picks its pre-tokenizer by that name);
// - SentencePiece-style BPE with byte fallback (pieces spelled with U+2581, as Gemma's):
//   tokenizer.ggml.model "llama". GGUF's SentencePiece tokenizer merges by piece score, so each
//   piece's score is minus the rank of the merge that makes it (pieces no merge makes rank last),
//   which applies the merges in the same order as the BPE model does.
//
// A config.json beside them, if present, gives the embedding rows the vocabulary is padded to, as the
// converter pads it.
//
// Token types follow the converter: added tokens marked special, or that look special
// (<|...|>, <start_of_...>, <end_of_...>), are control tokens; other added tokens are
// user-defined; <0xNN> pieces of a byte-fallback vocabulary are byte tokens.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ggufValue, type GgufTypedValue } from './loaders/gguf-writer.js';
import { TOKEN_TYPE } from './synthetic-vocab.js';

export class HfTokenizerError extends Error {
  constructor(dir: string, message: string) {
    super(`${dir}: ${message}`);
    this.name = 'HfTokenizerError';
  }
}

export interface GgufTokenizer {
  vocabSize: number;
  /** tokenizer.* entries, in the order the converter writes them. */
  metadata: Array<[string, GgufTypedValue]>;
}

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]>; byte_fallback?: boolean };
  added_tokens?: AddedToken[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
}

/**
 * The split regexes of the byte-level pre-tokenizers llama.cpp knows, by the name it knows them
 * under (llama.cpp's converter identifies them by hashing a tokenization; the regex says the same).
 */
const PRE_BY_REGEX: Array<[name: string, regex: string]> = [
  ['llama-bpe', "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  ['qwen2', "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
];

function readJson<T>(dir: string, name: string): T {
  let text: string;
  try {
    text = readFileSync(join(dir, name), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new HfTokenizerError(dir, code === 'ENOENT' ? `no ${name} (a Hugging Face tokenizer folder holds tokenizer.json and tokenizer_config.json)` : `cannot read ${name}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new HfTokenizerError(dir, `${name} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Every step of a (possibly nested) normalizer or pre_tokenizer, depth first. */
function steps(p: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (!p || typeof p !== 'object') return out;
  const o = p as Record<string, unknown>;
  out.push(o);
  for (const child of [...((o.pretokenizers as unknown[] | undefined) ?? []), ...((o.normalizers as unknown[] | undefined) ?? [])]) steps(child, out);
  return out;
}

/**
 * llama.cpp's name for a byte-level pre-tokenizer: by its Split regex, or, without one, by the
 * ByteLevel step's own GPT-2 regex, with every digit split off first for SmolLM's (StarCoder's).
 */
function byteLevelPreName(dir: string, pre: Array<Record<string, unknown>>): string {
  const regex = pre.map((o) => (o.type === 'Split' ? (o.pattern as { Regex?: unknown } | undefined)?.Regex : undefined)).find((r) => typeof r === 'string');
  if (regex !== undefined) {
    const name = PRE_BY_REGEX.find(([, r]) => r === regex)?.[0];
    if (!name) throw new HfTokenizerError(dir, `unknown byte-level pre-tokenizer regex ${JSON.stringify(regex)}: supported are Llama 3's and Qwen2's`);
    return name;
  }
  if (pre.some((o) => o.type === 'ByteLevel' && o.use_regex !== false)) {
    return pre.some((o) => o.type === 'Digits' && o.individual_digits === true) ? 'smollm' : 'gpt-2';
  }
  throw new HfTokenizerError(dir, 'byte-level tokenizer.json without a split regex: supported are the GPT-2, SmolLM, Llama 3 and Qwen2 pre-tokenizers');
}

/**
 * Whether a SentencePiece-style tokenizer puts U+2581 in front of the text (Llama 2, Mistral: a
 * Prepend normalizer or a prepending Metaspace); Gemma's only replaces spaces.
 */
function prependsSpace(normalizer: Array<Record<string, unknown>>, pre: Array<Record<string, unknown>>): boolean {
  return (
    normalizer.some((o) => o.type === 'Prepend' && o.prepend === '\u2581') ||
    pre.some((o) => o.type === 'Metaspace' && (o.prepend_scheme !== undefined ? o.prepend_scheme !== 'never' : o.add_prefix_space !== false))
  );
}

/** A special token's text from tokenizer_config.json (a string, or {content}). */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** convert_hf_to_gguf's does_token_look_special. */
function looksSpecial(t: string): boolean {
  return (
    ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(t) ||
    (t.startsWith('<|') && t.endsWith('|>')) ||
    (t.startsWith('<\uff5c') && t.endsWith('\uff5c>')) ||
    t.startsWith('<start_of_') ||
    t.startsWith('<end_of_')
  );
}

export function ggufTokenizerFromHf(dir: string): GgufTokenizer {
  const tj = readJson<TokenizerJson>(dir, 'tokenizer.json');
  const cfg = readJson<Record<string, unknown>>(dir, 'tokenizer_config.json');
  const model = tj.model;
  if (model?.type !== 'BPE' || !model.vocab || !model.merges) {
    throw new HfTokenizerError(dir, `tokenizer.json has a '${model?.type ?? 'missing'}' model; only BPE vocabularies (byte-level or with byte fallback) are converted`);
  }
  const added = tj.added_tokens ?? [];
  const addedById = new Map(added.map((a) => [a.id, a]));
  let vocabSize = 0;
  for (const id of Object.values(model.vocab)) vocabSize = Math.max(vocabSize, id + 1);
  for (const a of added) vocabSize = Math.max(vocabSize, a.id + 1);
  // The converter pads the vocabulary to the model's embedding rows (config.json's vocab_size, e.g.
  // Qwen's 151936 for 151669 tokens), so a folder that also holds config.json gets the same rows.
  vocabSize = Math.max(vocabSize, modelVocabSize(dir));
  const pieces: string[] = new Array(vocabSize);
  for (const [piece, id] of Object.entries(model.vocab)) pieces[id] = piece;
  for (const a of added) pieces[a.id] = a.content;

  const preSteps = steps(tj.pre_tokenizer);
  const byteLevel = preSteps.some((o) => o.type === 'ByteLevel');
  if (!byteLevel && !model.byte_fallback) {
    throw new HfTokenizerError(dir, 'tokenizer.json is neither byte-level BPE nor BPE with byte fallback; it cannot be written as a GGUF tokenizer here');
  }
  const merges = model.merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));

  const types: number[] = new Array(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    if (pieces[id] === undefined) {
      // A hole in the ids or padding: llama.cpp's converter fills it with an unused pad token.
      pieces[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
      continue;
    }
    const a = addedById.get(id);
    if (a) types[id] = a.special || looksSpecial(a.content) ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
    else if (!byteLevel && /^<0x[0-9A-F]{2}>$/.test(pieces[id]!)) types[id] = TOKEN_TYPE.byte;
    else types[id] = TOKEN_TYPE.normal;
  }
  const unk = tokenText(cfg.unk_token);
  if (unk !== undefined && model.vocab[unk] !== undefined && !byteLevel) types[model.vocab[unk]!] = TOKEN_TYPE.unknown;

  const idOf = (name: string): number | undefined => {
    const t = tokenText(cfg[name]);
    if (t === undefined) return undefined;
    const id = added.find((a) => a.content === t)?.id ?? model.vocab![t];
    if (id === undefined) throw new HfTokenizerError(dir, `tokenizer_config.json's ${name} '${t}' is not in the vocabulary`);
    return id;
  };

  const metadata: Array<[string, GgufTypedValue]> = [];
  if (byteLevel) {
    metadata.push(['tokenizer.ggml.model', ggufValue.string('gpt2')], ['tokenizer.ggml.pre', ggufValue.string(byteLevelPreName(dir, preSteps))]);
    metadata.push(['tokenizer.ggml.tokens', ggufValue.array('string', pieces)], ['tokenizer.ggml.token_type', ggufValue.array('i32', types)]);
    metadata.push(['tokenizer.ggml.merges', ggufValue.array('string', merges)]);
  } else {
    // SentencePiece-style: a piece's score orders the merge that makes it.
    const scores = pieces.map((_piece, id) => (types[id] === TOKEN_TYPE.unused ? -1000 : -(merges.length + 1))); // pads: the converter's score
    merges.forEach((m, rank) => {
      const sp = m.indexOf(' ', 1);
      const id = model.vocab![m.slice(0, sp) + m.slice(sp + 1)];
      if (id !== undefined && scores[id] === -(merges.length + 1)) scores[id] = 0 - rank; // +0, not -0, for the first
    });
    metadata.push(['tokenizer.ggml.model', ggufValue.string('llama')], ['tokenizer.ggml.pre', ggufValue.string('default')]);
    metadata.push(['tokenizer.ggml.tokens', ggufValue.array('string', pieces)], ['tokenizer.ggml.scores', ggufValue.array('f32', scores)]);
    metadata.push(['tokenizer.ggml.token_type', ggufValue.array('i32', types)]);
    metadata.push(['tokenizer.ggml.add_space_prefix', ggufValue.bool(prependsSpace(steps(tj.normalizer), preSteps))]);
  }
  const ids: Array<[string, string]> = [['bos_token', 'bos_token_id'], ['eos_token', 'eos_token_id'], ['unk_token', 'unknown_token_id'], ['pad_token', 'padding_token_id']];
  for (const [cfgName, key] of ids) {
    const id = idOf(cfgName);
    if (id !== undefined) metadata.push([`tokenizer.ggml.${key}`, ggufValue.u32(id)]);
  }
  // add_bos_token: the config's, else whether the post-processor puts BOS in front (Llama 3's does).
  const bosId = idOf('bos_token');
  const addBos = typeof cfg.add_bos_token === 'boolean' ? cfg.add_bos_token : bosId !== undefined && JSON.stringify((tj as Record<string, unknown>).post_processor ?? '').includes(`"SpecialToken":{"id":${JSON.stringify(pieces[bosId])}`);
  metadata.push(['tokenizer.ggml.add_bos_token', ggufValue.bool(addBos)]);
  metadata.push(['tokenizer.ggml.add_eos_token', ggufValue.bool(cfg.add_eos_token === true)]);
  const template = chatTemplateOf(cfg);
  if (template !== undefined) metadata.push(['tokenizer.chat_template', ggufValue.string(template)]);
  return { vocabSize, metadata };
}

/** config.json's vocab_size (text_config's for multimodal configs), or 0 without one. */
function modelVocabSize(dir: string): number {
  let cfg: { vocab_size?: unknown; text_config?: { vocab_size?: unknown } };
  try {
    cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as typeof cfg;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new HfTokenizerError(dir, `cannot read config.json: ${(e as Error).message}`);
  }
  const n = cfg.vocab_size ?? cfg.text_config?.vocab_size;
  if (n === undefined) return 0;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw new HfTokenizerError(dir, `config.json's vocab_size ${JSON.stringify(n)} is not a positive integer`);
  return n;
}

/** The default chat template: a string, or the one named "default" in a list of named templates. */
function chatTemplateOf(cfg: Record<string, unknown>): string | undefined {
  const t = cfg.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t as Array<{ name?: string; template?: string }>;
    return (named.find((x) => x.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}
