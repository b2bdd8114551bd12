// XGrammar (@mlc-ai/web-xgrammar, the WASM build of the library vLLM and SGLang use) loaded into
// Node. The package declares itself an ES module but ships a UMD bundle that assigns to `exports`,
// so neither `import` nor `require` of it works as published; it is evaluated here as the
// CommonJS module it really is, once per process. Nothing else imports the package.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as XGrammar from '@mlc-ai/web-xgrammar';

export type XGrammarModule = typeof XGrammar;
export type { CompiledGrammar, GrammarCompiler, GrammarMatcher, TokenizerInfo } from '@mlc-ai/web-xgrammar';

let loaded: XGrammarModule | undefined;
let capture: string[] | null = null;

/** The XGrammar module (its WASM is instantiated on the first factory call, which is async). */
export function xgrammar(): XGrammarModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const module = { exports: {} as Record<string, unknown> };
  // The same wrapper Node gives a CommonJS file.
  const body = new Function('exports', 'require', 'module', '__filename', '__dirname', readFileSync(file, 'utf8'));
  body.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  loaded = module.exports as unknown as XGrammarModule;
  return loaded;
}

/**
 * Starts XGrammar's WASM with its error printer routed through here. A grammar, schema or regex it
 * rejects aborts the call with a bare "Aborted()" and prints the reason ("[FATAL] file:line: ...")
 * through the printer it bound to console.error when it started, so the reason is caught while
 * withErrorText runs and passed on to console.error otherwise.
 */
export async function initXGrammar(): Promise<XGrammarModule> {
  const xg = xgrammar();
  const original = console.error;
  console.error = (...args: unknown[]) => {
    if (capture) capture.push(args.map(String).join(' '));
    else original.apply(console, args);
  };
  try {
    // Any factory call starts the WASM; this one is cheap.
    (await xg.Grammar.fromEBNF('root ::= "a"')).dispose();
  } finally {
    console.error = original;
  }
  return xg;
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Runs f; if it throws, the error's message is what XGrammar printed while it ran (when it printed
 * anything). Calls run one at a time, so each reads only its own printout (the WASM work is
 * synchronous anyway; the wrappers only await their start-up).
 */
export function withErrorText<T>(f: () => Promise<T>): Promise<T> {
  const run = queue.then(() => capturing(f));
  queue = run.catch(() => undefined);
  return run;
}

async function capturing<T>(f: () => Promise<T>): Promise<T> {
  const lines: string[] = [];
  capture = lines;
  try {
    return await f();
  } catch (e) {
    const printed = lines
      .map((l) => l.replace(/^\[FATAL\]\s*\S+:\d+:\s*/, '').trim())
      .filter((l) => l !== '' && !l.startsWith('Aborted('));
    if (printed.length > 0) throw new Error(printed.join('; '));
    throw e;
  } finally {
    capture = null;
  }
}
