// One model's grammar compiler: its vocabulary handed to XGrammar once, and constraints compiled
// once each and kept by their text (an LRU of compiled grammars), as vLLM's XGrammar backend does.
//
// The vocabulary goes in as bytes. Every token is given as the exact bytes our detokenizer emits
// for it, spelled with GPT-2's byte-to-character map so XGrammar's "byte_level" decoding gets them
// back unchanged, whatever the tokenizer's own kind (byte-level BPE or SentencePiece with byte
// fallback); so the grammar judges the same bytes the user receives, including partial UTF-8
// byte tokens. Control tokens are given as empty strings, which XGrammar never allows inside a
// grammar, and the end-of-generation ids as its stop tokens, allowed only where the grammar may end.

import { BYTE_TO_CHAR } from '../../model/tokenizers/byte-level.js';
import { InvalidParamError } from '../request-errors.js';
import type { Constraint } from './constraint.js';
import { initXGrammar, withErrorText, xgrammar, type CompiledGrammar, type GrammarCompiler, type GrammarMatcher } from './xgrammar.js';

/** What the compiler needs to know of a vocabulary. */
export interface GrammarVocab {
  /** Rows of the model's logits (may exceed the tokenizer's vocabulary: padding ids are never allowed). */
  vocabSize: number;
  /** Number of ids the tokenizer defines (ids from here to vocabSize are padding). */
  numTokens: number;
  /** The bytes token `id` decodes to, or null for a control token that never appears in text. */
  tokenBytes(id: number): Uint8Array | null;
  /** End-of-generation ids: the grammar allows them only once it may end. */
  stopIds: readonly number[];
}

function byteLevelText(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

const MAX_CACHED_GRAMMARS = 256;
/**
 * Free whitespace in JSON is one character between two tokens (a space or a line break). XGrammar's
 * any-whitespace JSON (vLLM's default) allows any run of it, and a vocabulary holds hundreds of
 * whitespace tokens against a few that make progress, so a weak or unlucky model can spend its
 * whole budget on whitespace: a random walk over the allowed tokens of a small tool-call schema
 * took a median 446 tokens with runs of up to 20 characters (Qwen3 vocabulary), 209 with one, and
 * 42 with XGrammar's compact layout (disableAnyWhitespace). llama.cpp's JSON grammars bound it too.
 */
const MAX_WHITESPACE = 1;

export class GrammarCompilerCache {
  private readonly grammars = new Map<string, Promise<CompiledGrammar>>();

  private constructor(
    private readonly compiler: GrammarCompiler,
    readonly vocabSize: number,
  ) {}

  static async create(vocab: GrammarVocab): Promise<GrammarCompilerCache> {
    const xg = await initXGrammar();
    const encoded = new Array<string>(vocab.numTokens);
    for (let id = 0; id < vocab.numTokens; id++) {
      const bytes = vocab.tokenBytes(id);
      encoded[id] = bytes === null ? '' : byteLevelText(bytes);
    }
    const info = await xg.TokenizerInfo.createTokenizerInfo(encoded, 'byte_level', false, vocab.vocabSize, [...vocab.stopIds]);
    // XGrammar's own cache is off: ours keys by the constraint and bounds the count.
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
    return new GrammarCompilerCache(compiler, vocab.vocabSize);
  }

  /** The compiled grammar of a constraint; a schema, regex or grammar XGrammar rejects is an InvalidParamError naming why. */
  compile(c: Constraint, param = 'structuredOutputs'): Promise<CompiledGrammar> {
    const hit = this.grammars.get(c.key);
    if (hit) {
      // Most recently used last.
      this.grammars.delete(c.key);
      this.grammars.set(c.key, hit);
      return hit;
    }
    const p = this.compileUncached(c, param);
    this.grammars.set(c.key, p);
    p.catch(() => this.grammars.delete(c.key));
    while (this.grammars.size > MAX_CACHED_GRAMMARS) {
      const oldest = this.grammars.keys().next().value as string;
      const evicted = this.grammars.get(oldest)!;
      this.grammars.delete(oldest);
      // Matchers made from it keep their own reference inside the WASM heap.
      void evicted.then((g) => g.dispose(), () => undefined);
    }
    return p;
  }

  private async compileUncached(c: Constraint, param: string): Promise<CompiledGrammar> {
    try {
      return await withErrorText(() => {
        switch (c.kind) {
          case 'json':
          case 'jsonObject':
            // indent -1: no fixed layout (XGrammar's JavaScript default would be a 2-space indent).
            return this.compiler.compileJSONSchema(c.kind === 'json' ? c.text : '{"type":"object"}', c.anyWhitespace, -1, undefined, true, c.anyWhitespace ? MAX_WHITESPACE : undefined);
          case 'regex':
            return this.compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: c.text } });
          case 'choice':
          case 'grammar':
            return this.compiler.compileGrammar(c.text, 'root');
        }
      });
    } catch (e) {
      const name = c.kind === 'json' ? 'JSON schema' : c.kind === 'choice' ? 'choice list' : c.kind;
      throw new InvalidParamError(`${param}.${c.kind}`, `the ${name} cannot be compiled: ${errorText(e)}`);
    }
  }

  /** A fresh matcher at the grammar's start. */
  async matcher(g: CompiledGrammar): Promise<GrammarMatcher> {
    return xgrammar().GrammarMatcher.createGrammarMatcher(g);
  }

  dispose(): void {
    for (const p of this.grammars.values()) void p.then((g) => g.dispose(), () => undefined);
    this.grammars.clear();
    this.compiler.dispose();
  }
}

/** XGrammar's errors come through the WASM boundary as Errors, strings or numbers. */
function errorText(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.replace(/\s+/g, ' ').trim().slice(0, 500) || 'XGrammar gave no reason';
}
