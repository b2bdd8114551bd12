// Test vocabularies for the tokenizer tests: a byte-level BPE vocabulary learned deterministically on
// an embedded paragraph, as GGUF metadata and as a complete GGUF file llama.cpp can load.
import { readGguf, type GgufValue } from '../../src/model/loaders/gguf.js';
import { ggufValue, writeGgufFile, type GgufTypedValue } from '../../src/model/loaders/gguf-writer.js';
import { BYTE_TO_CHAR, toByteLevel } from '../../src/model/tokenizers/byte-level.js';
import { gpt2PreTokenize } from '../../src/model/tokenizers/pre-tokenizers.js';

export const TRAINING_TEXT = `Once upon a time, in a small town by the sea, there lived a girl named Lily. She loved to play
outside with her friends, and every morning she ran down to the beach to look for shells. "Look at this one!"
she said to her mother. "It's the prettiest shell I've ever seen." Her mother smiled: "We'll put it on the
shelf with the others." The town had 1,234 houses and 56 shops; the baker opened at 7:30 and sold bread for
$2.50 a loaf. In 2024 the town's library held 10,000 books — novels, atlases, and old newspapers.
def tokenize(text):
    return [word.lower() for word in text.split()]  # split on spaces
Café, naïve, résumé, Zürich, São Paulo; 東京, 北京, 서울; emoji 😀 and 🎉 too. They're here, aren't they?
THE END... or is it??? Yes!!! Once upon a time the sea was calm, and the children played until night.`;

export const ENDOFTEXT = '<|endoftext|>';

export interface LearnedBpe {
  /** Byte characters (ids 0..255), then merge results in merge order, then <|endoftext|>. */
  tokens: string[];
  merges: string[];
}

/**
 * Learns byte-level BPE merges on TRAINING_TEXT (GPT-2 pre-tokenized) until the vocabulary has
 * `vocabSize` tokens: each step merges the most frequent adjacent pair, the smallest "left right"
 * string on ties, so the result is fully deterministic.
 */
export function learnByteLevelBpe(vocabSize: number): LearnedBpe {
  const counts = new Map<string, number>();
  for (const w of gpt2PreTokenize(TRAINING_TEXT)) {
    const key = toByteLevel(w);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const words = [...counts].map(([w, c]) => ({ symbols: [...w], count: c }));
  const tokens = [...BYTE_TO_CHAR];
  const known = new Set(tokens);
  const merges: string[] = [];
  while (tokens.length < vocabSize - 1) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const k = w.symbols[i] + ' ' + w.symbols[i + 1];
        pairs.set(k, (pairs.get(k) ?? 0) + w.count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) if (c > bestCount || (c === bestCount && k < best!)) [best, bestCount] = [k, c];
    if (best === undefined) throw new Error(`training text too short for ${vocabSize} tokens`);
    const [l, r] = best.split(' ') as [string, string];
    merges.push(best);
    if (!known.has(l + r)) {
      known.add(l + r);
      tokens.push(l + r);
    }
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === l && w.symbols[i + 1] === r) {
          out.push(l + r);
          i++;
        } else out.push(w.symbols[i]!);
      }
      w.symbols = out;
    }
  }
  tokens.push(ENDOFTEXT);
  return { tokens, merges };
}

/** Typed tokenizer.ggml.* entries of a learned BPE vocabulary. */
export function bpeTokenizerEntries(bpe: LearnedBpe, pre: string): Array<[string, GgufTypedValue]> {
  const eot = bpe.tokens.length - 1;
  return [
    ['tokenizer.ggml.model', ggufValue.string('gpt2')],
    ['tokenizer.ggml.pre', ggufValue.string(pre)],
    ['tokenizer.ggml.tokens', ggufValue.array('string', bpe.tokens)],
    ['tokenizer.ggml.token_type', ggufValue.array('i32', bpe.tokens.map((_, i) => (i === eot ? 3 : 1)))],
    ['tokenizer.ggml.merges', ggufValue.array('string', bpe.merges)],
    ['tokenizer.ggml.bos_token_id', ggufValue.u32(eot)],
    ['tokenizer.ggml.eos_token_id', ggufValue.u32(eot)],
  ];
}

/** The same entries as plain metadata values, for tokenizerFromGguf without a file. */
export function bpeMetadata(bpe: LearnedBpe, pre: string): Record<string, GgufValue> {
  return Object.fromEntries(bpeTokenizerEntries(bpe, pre).map(([k, v]) => [k, v.value as GgufValue]));
}

/**
 * Writes a llama-architecture GGUF with a BPE vocabulary: the tensors and hyper-parameters of
 * `modelPath` (a generated tiny model whose vocabulary has as many tokens), its tokenizer keys
 * replaced by the BPE ones.
 */
export function writeBpeGguf(out: string, modelPath: string, bpe: LearnedBpe, pre: string): void {
  const model = readGguf(modelPath);
  const embd = model.tensors.get('token_embd.weight');
  if (!embd || embd.dims[1] !== bpe.tokens.length) throw new Error(`${modelPath} does not have a ${bpe.tokens.length}-token embedding`);
  const metadata: Array<[string, GgufTypedValue]> = [];
  for (const [key, value] of Object.entries(model.metadata)) {
    if (key.startsWith('tokenizer.') || key === 'general.alignment') continue;
    metadata.push([key, typed(key, value)]);
  }
  metadata.push(...bpeTokenizerEntries(bpe, pre));
  writeGgufFile(out, {
    metadata,
    tensors: [...model.tensors.values()].map((t) => ({ name: t.name, type: t.dtype, dims: t.dims, data: t.data })),
  });
}

/** The GGUF type llama.cpp expects for the llama.* and general.* keys the generated models carry. */
function typed(key: string, v: GgufValue): GgufTypedValue {
  if (typeof v === 'string') return ggufValue.string(v);
  if (typeof v === 'boolean') return ggufValue.bool(v);
  if (typeof v === 'bigint') return ggufValue.u64(v);
  if (typeof v === 'number') return key.endsWith('epsilon') || key.endsWith('freq_base') ? ggufValue.f32(v) : ggufValue.u32(v);
  throw new Error(`unexpected array metadata ${key}`);
}
