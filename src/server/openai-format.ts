// The response objects of OpenAI's API, built from engine outputs: completions and chat, whole and
// streamed, with usage and logprobs in the exact shapes the official clients parse.
import type { FinishReason, TokenLogprob } from '../engine/types.js';
import type { Tokenizer } from '../model/tokenizer-types.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** OpenAI's finish_reason; 'abort' (vLLM's) only appears when the server itself cut a request short. */
export type ApiFinishReason = 'stop' | 'length' | 'abort';

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

/** The text of one token on its own, for logprob listings. Token-id-only models name the id. */
export function tokenString(tok: Tokenizer | null, id: number): string {
  if (!tok) return `token_id:${id}`;
  const piece = tok.tokenText(id);
  // SentencePiece byte-fallback pieces stand for one raw byte; show the byte's character.
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (byte) return String.fromCharCode(parseInt(byte[1], 16));
  // SentencePiece marks a leading space with U+2581 ("▁"); the decoded token has a real space.
  return piece.replace(/\u2581/g, ' ');
}

/** Legacy completions logprobs: parallel arrays, top_logprobs as {token: logprob} maps. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export function completionLogprobs(tok: Tokenizer | null, entries: TokenLogprobEntry[], startOffset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = startOffset;
  for (const e of entries) {
    const s = tokenString(tok, e.tokenId);
    out.tokens.push(s);
    out.token_logprobs.push(finite(e.logprob));
    // Like vLLM, the chosen token is always listed among the alternatives.
    const top: Record<string, number> = {};
    for (const t of e.top) top[tokenString(tok, t.tokenId)] ??= finite(t.logprob);
    top[s] ??= finite(e.logprob);
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += s.length;
  }
  return out;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export function chatLogprobs(tok: Tokenizer | null, entries: TokenLogprobEntry[]): { content: ChatTokenLogprob[] } {
  const bytes = (s: string) => [...Buffer.from(s, 'utf8')];
  return {
    content: entries.map((e) => {
      const s = tokenString(tok, e.tokenId);
      return {
        token: s,
        logprob: finite(e.logprob),
        bytes: bytes(s),
        top_logprobs: e.top.map((t) => {
          const ts = tokenString(tok, t.tokenId);
          return { token: ts, logprob: finite(t.logprob), bytes: bytes(ts) };
        }),
      };
    }),
  };
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
