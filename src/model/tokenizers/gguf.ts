// Builds a tokenizer from GGUF metadata (the tokenizer.ggml.* keys), with llama.cpp's defaults for
// keys a file leaves out, so that a file tokenizes here as it does in llama.cpp.

import { BpeTokenizer } from './bpe.js';
import { TokenizerError } from './errors.js';
import { gpt2PreTokenize, llama3PreTokenize, qwen2PreTokenize, smollmPreTokenize, type PreTokenizer } from './pre-tokenizers.js';
import { SpmTokenizer } from './spm.js';
import { Vocab } from './vocab.js';
import type { GgufValue } from '../loaders/gguf.js';
import type { Tokenizer } from '../tokenizer-types.js';

type Metadata = Record<string, GgufValue>;

interface PreTokenizerSpec {
  split: PreTokenizer;
  ignoreMerges: boolean;
  addBos: boolean;
}

const GPT2_PRE: PreTokenizerSpec = { split: gpt2PreTokenize, ignoreMerges: false, addBos: false };
const LLAMA3_PRE: PreTokenizerSpec = { split: llama3PreTokenize, ignoreMerges: true, addBos: true };
const QWEN2_PRE: PreTokenizerSpec = { split: qwen2PreTokenize, ignoreMerges: false, addBos: false };
const SMOLLM_PRE: PreTokenizerSpec = { split: smollmPreTokenize, ignoreMerges: false, addBos: false };

/**
 * tokenizer.ggml.pre values we implement. An absent value or 'default' gets the GPT-2 regex (llama.cpp's
 * 'default' additionally splits some punctuation and digit runs; files written by current converters
 * always name their pre-tokenizer).
 */
const PRE_TOKENIZERS: Record<string, PreTokenizerSpec> = {
  default: GPT2_PRE,
  'gpt-2': GPT2_PRE,
  gpt2: GPT2_PRE,
  'phi-2': GPT2_PRE,
  llama3: LLAMA3_PRE,
  'llama-v3': LLAMA3_PRE,
  'llama-bpe': LLAMA3_PRE,
  qwen2: QWEN2_PRE,
  smollm: SMOLLM_PRE,
};

export function tokenizerFromGguf(metadata: Metadata): Tokenizer {
  const model = optString(metadata, 'tokenizer.ggml.model');
  if (model === undefined) throw new TokenizerError('GGUF metadata has no tokenizer.ggml.model: the file carries no tokenizer');
  if (model !== 'llama' && model !== 'gpt2') {
    throw new TokenizerError(`unsupported tokenizer.ggml.model '${model}': Stepwise supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)`);
  }
  const pieces = optStringArray(metadata, 'tokenizer.ggml.tokens');
  if (pieces === undefined) throw new TokenizerError('GGUF metadata has no tokenizer.ggml.tokens: the file carries no vocabulary');
  const n = pieces.length;
  const scores = optNumberArray(metadata, 'tokenizer.ggml.scores');
  const types = optNumberArray(metadata, 'tokenizer.ggml.token_type');
  const specialId = (name: string, fallback: number | undefined): number | undefined => {
    const v = optInt(metadata, `tokenizer.ggml.${name}`);
    if (v !== undefined) return v;
    return fallback !== undefined && fallback < n ? fallback : undefined;
  };
  const extraEogIds = ['eot_token_id', 'eom_token_id'].map((k) => specialId(k, undefined)).filter((id): id is number => id !== undefined);
  const addBosKey = optBool(metadata, 'tokenizer.ggml.add_bos_token');
  const addEos = optBool(metadata, 'tokenizer.ggml.add_eos_token') ?? false;

  if (model === 'llama') {
    // llama.cpp's SentencePiece defaults: <unk> 0, <s> 1, </s> 2, BOS added, dummy prefix on.
    const vocab = new Vocab({ pieces, scores, types, bosId: specialId('bos_token_id', 1), eosId: specialId('eos_token_id', 2), unkId: specialId('unknown_token_id', 0), extraEogIds });
    return new SpmTokenizer(vocab, {
      spaceSymbol: '\u2581',
      addSpacePrefix: optBool(metadata, 'tokenizer.ggml.add_space_prefix') ?? true,
      addBos: addBosKey ?? true,
      addEos,
    });
  }

  const preName = optString(metadata, 'tokenizer.ggml.pre') ?? 'default';
  const pre = Object.hasOwn(PRE_TOKENIZERS, preName) ? PRE_TOKENIZERS[preName]! : undefined;
  if (!pre) {
    throw new TokenizerError(`unsupported tokenizer.ggml.pre '${preName}' (byte-level BPE pre-tokenizer): Stepwise supports ${Object.keys(PRE_TOKENIZERS).map((k) => `'${k}'`).join(', ')}`);
  }
  const merges = optStringArray(metadata, 'tokenizer.ggml.merges');
  if (merges === undefined) throw new TokenizerError("GGUF metadata has no tokenizer.ggml.merges: a 'gpt2' tokenizer needs its merge list");
  const ranks = new Map<string, number>();
  merges.forEach((m, rank) => {
    // Split at the first space after the first character, as llama.cpp does.
    const sp = m.indexOf(' ', 1);
    if (sp < 0) throw new TokenizerError(`tokenizer.ggml.merges[${rank}] is '${m}': a merge must be two pieces separated by a space`);
    const key = m.slice(0, sp) + ' ' + m.slice(sp + 1);
    if (!ranks.has(key)) ranks.set(key, rank);
  });
  const vocab = new Vocab({ pieces, scores, types, bosId: specialId('bos_token_id', undefined), eosId: specialId('eos_token_id', undefined), unkId: specialId('unknown_token_id', undefined), extraEogIds });
  return new BpeTokenizer(vocab, { ranks, preTokenize: pre.split, ignoreMerges: pre.ignoreMerges, addBos: addBosKey ?? pre.addBos, addEos });
}

function optString(md: Metadata, key: string): string | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new TokenizerError(`GGUF metadata ${key} should be a string, got ${describe(v)}`);
  return v;
}

function optBool(md: Metadata, key: string): boolean | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v;
  if ((typeof v === 'number' || typeof v === 'bigint') && (Number(v) === 0 || Number(v) === 1)) return Number(v) === 1;
  throw new TokenizerError(`GGUF metadata ${key} should be a boolean, got ${describe(v)}`);
}

function optInt(md: Metadata, key: string): number | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  const x = typeof v === 'bigint' ? Number(v) : v;
  if (typeof x !== 'number' || !Number.isInteger(x)) throw new TokenizerError(`GGUF metadata ${key} should be an integer, got ${describe(v)}`);
  return x;
}

function optStringArray(md: Metadata, key: string): string[] | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new TokenizerError(`GGUF metadata ${key} should be an array of strings, got ${describe(v)}`);
  v.forEach((x, i) => {
    if (typeof x !== 'string') throw new TokenizerError(`GGUF metadata ${key}[${i}] should be a string, got ${describe(x)}`);
  });
  return v as string[];
}

function optNumberArray(md: Metadata, key: string): number[] | undefined {
  const v = md[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new TokenizerError(`GGUF metadata ${key} should be an array of numbers, got ${describe(v)}`);
  return v.map((x, i) => {
    if (typeof x === 'number') return x;
    if (typeof x === 'bigint') return Number(x);
    throw new TokenizerError(`GGUF metadata ${key}[${i}] should be a number, got ${describe(x)}`);
  });
}

function describe(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `the string '${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  return `${typeof v} ${String(v)}`;
}
