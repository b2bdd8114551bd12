// The response objects of OpenAI's API, built from engine outputs: completions and chat, whole and
// streamed, with usage and logprobs in the exact shapes the official clients parse.
import type { FinishReason, TokenLogprob } from '../engine/types.js';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { byteOfChar } from '../model/tokenizers/byte-level.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** OpenAI's finish_reason; 'abort' (vLLM's) only appears when the server itself cut a request short. */
export type ApiFinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

export function apiFinishReason(r: FinishReason | undefined): ApiFinishReason {
  return r ?? 'stop';
}

/** One generated token with its logprob and alternatives, as the engine reports it. */
export interface TokenLogprobEntry {
  tokenId: number;
  logprob: number;
  top: TokenLogprob[];
}

/** JSON has no -Infinity; vLLM reports impossible tokens as -9999.0 too. */
function finite(lp: number): number {
  return Number.isFinite(lp) ? lp : -9999;
}

/** The raw bytes of a token that is only part of a UTF-8 character, read from its vocabulary piece. */
function partialTokenBytes(piece: string): number[] | undefined {
  // SentencePiece byte fallback: "<0xE2>".
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (byte) return [parseInt(byte[1], 16)];
  // Byte-level BPE: every character stands for one byte.
  const bytes: number[] = [];
  for (const ch of piece) {
    const b = byteOfChar(ch);
    if (b === undefined) return undefined;
    bytes.push(b);
  }
  return bytes;
}

export interface TokenText {
  /** The token's text; a token that is only part of a character is shown as OpenAI does, "bytes:\\xe2". */
  text: string;
  bytes: number[];
}

/**
 * The text and bytes of single tokens, for logprob listings. A token is decoded as it would appear
 * mid-text (a SentencePiece "▁the" keeps its space). Token-id-only models name the id. Cached per id.
 */
export class TokenTexts {
  private readonly cache = new Map<number, TokenText>();

  constructor(private readonly tok: Tokenizer | null) {}

  get(id: number): TokenText {
    let t = this.cache.get(id);
    if (t === undefined) {
      t = this.compute(id);
      this.cache.set(id, t);
    }
    return t;
  }

  private compute(id: number): TokenText {
    const tok = this.tok;
    if (!tok) return { text: `token_id:${id}`, bytes: [...Buffer.from(`token_id:${id}`)] };
    const d = tok.streamDecoder({ skipSpecial: false });
    const text = d.push(id) + d.flush();
    if (!text.includes('\uFFFD')) return { text, bytes: [...Buffer.from(text, 'utf8')] };
    const bytes = partialTokenBytes(tok.tokenText(id)) ?? [...Buffer.from(text, 'utf8')];
    return { text: 'bytes:' + bytes.map((b) => '\\x' + b.toString(16).padStart(2, '0')).join(''), bytes };
  }
}

/** Legacy completions logprobs: parallel arrays, top_logprobs as {token: logprob} maps. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

/** `offsets[i]`: where in the completion text entry i's text begins. */
export function completionLogprobs(texts: TokenTexts, entries: TokenLogprobEntry[], offsets: number[]): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  entries.forEach((e, i) => {
    const s = texts.get(e.tokenId).text;
    out.tokens.push(s);
    out.token_logprobs.push(finite(e.logprob));
    // Like vLLM, the chosen token is always listed among the alternatives.
    const top: Record<string, number> = {};
    for (const t of e.top) top[texts.get(t.tokenId).text] ??= finite(t.logprob);
    top[s] ??= finite(e.logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(offsets[i]);
  });
  return out;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export function chatLogprobs(texts: TokenTexts, entries: TokenLogprobEntry[]): { content: ChatTokenLogprob[] } {
  return {
    content: entries.map((e) => {
      const t = texts.get(e.tokenId);
      return {
        token: t.text,
        logprob: finite(e.logprob),
        bytes: t.bytes,
        top_logprobs: e.top.map((alt) => {
          const a = texts.get(alt.tokenId);
          return { token: a.text, logprob: finite(alt.logprob), bytes: a.bytes };
        }),
      };
    }),
  };
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
