// A tokenizer vocabulary: pieces, their merge scores and token types, the lookup from text to id, and
// the special tokens. Token types and the special-token rules follow llama.cpp's reading of GGUF
// vocabularies, because llama.cpp is the oracle the tests compare against.

import { TokenizerError } from './errors.js';

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/**
 * Texts of end-of-generation tokens in common vocabularies. Files often mark only EOS in metadata, so
 * llama.cpp also recognises these by their text (and treats them as control tokens); we do the same,
 * with the list of the llama.cpp our tests compare against, so a chat model stops at its end-of-turn
 * token. The fill-in-the-middle pad, repository and file-separator tokens end generation too.
 */
const EOG_TEXTS = new Set([
  '<|eot_id|>',
  '<|im_end|>',
  '<|end|>',
  '<|return|>',
  '<|call|>',
  '<|flush|>',
  '<|calls|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '</s>',
  '<|eom_id|>',
  '<EOT>',
  '_<EOT>',
  '[EOT]',
  '[EOS]',
  '<|end_of_text|>',
  '<end_of_utterance>',
  '<eos>',
  '<turn|>',
  '<|tool_response>',
  '<\uff5cend\u2581of\u2581sentence\uff5c>',
  // FIM pad / repository / file separator.
  '<|fim_pad|>',
  '<fim-pad>',
  '<|fim_repo|>',
  '<|repo_name|>',
  '<fim-repo>',
  '<|file_sep|>',
  '<fim-sep>',
]);

export interface VocabSpec {
  pieces: readonly string[];
  /** Merge scores (SentencePiece); all 0 when absent. */
  scores?: ArrayLike<number>;
  /** GGUF token types; all NORMAL when absent. */
  types?: ArrayLike<number>;
  bosId?: number;
  eosId?: number;
  unkId?: number;
  /** Extra end-of-generation ids from metadata (end-of-turn, end-of-message). */
  extraEogIds?: number[];
}

/** A token that is split out of text before the merge algorithm runs. */
export interface SpecialToken {
  id: number;
  text: string;
  /** User-defined tokens are split out even when special parsing is off (llama.cpp does so too). */
  alwaysParsed: boolean;
}

export class Vocab {
  readonly pieces: readonly string[];
  readonly scores: Float64Array;
  readonly types: Uint8Array;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  readonly eogIds: ReadonlySet<number>;
  /** Control, user-defined and unknown tokens, longest text first (longer specials win overlaps). */
  readonly specials: readonly SpecialToken[];
  private readonly idByText = new Map<string, number>();

  constructor(spec: VocabSpec) {
    const n = spec.pieces.length;
    if (n === 0) throw new TokenizerError('the vocabulary is empty: it has no tokens');
    this.pieces = spec.pieces;
    if (spec.scores && spec.scores.length !== n) {
      throw new TokenizerError(`the vocabulary has ${n} tokens but ${spec.scores.length} scores`);
    }
    if (spec.types && spec.types.length !== n) {
      throw new TokenizerError(`the vocabulary has ${n} tokens but ${spec.types.length} token types`);
    }
    this.scores = new Float64Array(n);
    this.types = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const piece = spec.pieces[i];
      if (typeof piece !== 'string') throw new TokenizerError(`token ${i} of the vocabulary is not a string`);
      this.scores[i] = spec.scores ? Number(spec.scores[i]) : 0;
      const t = spec.types ? Number(spec.types[i]) : TokenType.NORMAL;
      // Unknown type codes render as nothing, like llama.cpp's "undefined" attribute.
      this.types[i] = t >= TokenType.NORMAL && t <= TokenType.BYTE ? t : TokenType.UNDEFINED;
      // A later duplicate wins, as in llama.cpp's token_to_id map.
      this.idByText.set(piece, i);
    }
    this.bosId = checkId(spec.bosId, n, 'BOS');
    this.eosId = checkId(spec.eosId, n, 'EOS');
    this.unkId = checkId(spec.unkId, n, 'unknown-token');

    const eog = new Set<number>();
    if (this.eosId !== undefined) eog.add(this.eosId);
    for (const id of spec.extraEogIds ?? []) {
      const checked = checkId(id, n, 'end-of-generation');
      if (checked !== undefined) eog.add(checked);
    }
    for (let i = 0; i < n; i++) {
      if (EOG_TEXTS.has(this.pieces[i]!)) {
        eog.add(i);
        this.types[i] = TokenType.CONTROL;
      }
    }
    this.eogIds = eog;

    const specials: SpecialToken[] = [];
    for (let i = 0; i < n; i++) {
      const t = this.types[i];
      const text = this.pieces[i]!;
      if (text.length === 0) continue;
      if (t === TokenType.CONTROL || t === TokenType.UNKNOWN || t === TokenType.USER_DEFINED) {
        specials.push({ id: i, text, alwaysParsed: t === TokenType.USER_DEFINED });
      }
    }
    // llama.cpp orders by byte length; ties by id keep the order deterministic.
    const byteLen = (s: string) => Buffer.byteLength(s, 'utf8');
    specials.sort((a, b) => byteLen(b.text) - byteLen(a.text) || a.id - b.id);
    this.specials = specials;
  }

  get size(): number {
    return this.pieces.length;
  }

  /** The id of a piece, looked up over every token (llama.cpp's merges see control pieces too). */
  idOf(text: string): number | undefined {
    return this.idByText.get(text);
  }

  /** Control and unknown tokens: hidden when decoding with skipSpecial. */
  isHiddenSpecial(id: number): boolean {
    const t = this.types[id];
    return t === TokenType.CONTROL || t === TokenType.UNKNOWN;
  }

  checkTokenId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.pieces.length) {
      throw new TokenizerError(`token id ${String(id)} is out of range: the vocabulary has ${this.pieces.length} tokens (ids 0..${this.pieces.length - 1})`);
    }
  }
}

function checkId(id: number | undefined, n: number, what: string): number | undefined {
  if (id === undefined) return undefined;
  if (!Number.isInteger(id) || id < 0 || id >= n) {
    throw new TokenizerError(`the ${what} token id ${id} is out of range: the vocabulary has ${n} tokens`);
  }
  return id;
}
