// A request's output constraint (vLLM's StructuredOutputsParams, library spelling): exactly one of
// a JSON schema, any JSON object, a regular expression, a choice among strings, or an EBNF grammar.
// Plain data, so it travels with the sampling parameters; checked here for shape only (whether a
// schema or grammar compiles is XGrammar's call, in grammar-compiler.ts).

import { InvalidParamError } from '../request-errors.js';

export interface StructuredOutputsParams {
  /** A JSON schema (an object, or its JSON text). */
  json?: Record<string, unknown> | string;
  /** Any JSON object (OpenAI's response_format {type: "json_object"}). */
  jsonObject?: boolean;
  /** A regular expression the whole output must match. */
  regex?: string;
  /** The output is exactly one of these strings. */
  choice?: string[];
  /** An EBNF grammar in XGrammar's dialect (GBNF-like; the start rule is `root`). */
  grammar?: string;
  /** JSON without free whitespace between tokens (vLLM's disable_any_whitespace). */
  disableAnyWhitespace?: boolean;
}

const KINDS = ['json', 'jsonObject', 'regex', 'choice', 'grammar'] as const;
const MAX_TEXT = 1_000_000;

/** A checked constraint: which kind, and its text in the form XGrammar takes. */
export interface Constraint {
  kind: 'json' | 'jsonObject' | 'regex' | 'choice' | 'grammar';
  /** Schema JSON, regex, EBNF, or the choices' EBNF; '' for jsonObject. */
  text: string;
  anyWhitespace: boolean;
  /** Cache key: equal keys compile to the same grammar. */
  key: string;
}

/** Checks a StructuredOutputsParams value; `param` names it in errors. */
export function resolveConstraint(p: unknown, param = 'structuredOutputs'): Constraint {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new InvalidParamError(param, `${param} must be an object with one of ${KINDS.join(', ')}`);
  const o = p as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(KINDS as readonly string[]).includes(k) && k !== 'disableAnyWhitespace') {
      throw new InvalidParamError(`${param}.${k}`, `${param}.${k} is not a known constraint; use one of ${KINDS.join(', ')}`);
    }
  }
  const given = KINDS.filter((k) => o[k] !== undefined && o[k] !== null && o[k] !== false);
  if (given.length !== 1) {
    throw new InvalidParamError(param, `${param} must set exactly one of ${KINDS.join(', ')}${given.length ? `, got ${given.join(' and ')}` : ''}`);
  }
  const kind = given[0]!;
  const v = o[kind];
  const ws = o.disableAnyWhitespace;
  if (ws !== undefined && typeof ws !== 'boolean') throw new InvalidParamError(`${param}.disableAnyWhitespace`, `${param}.disableAnyWhitespace must be a boolean`);
  const anyWhitespace = ws !== true;
  let text: string;
  switch (kind) {
    case 'json': {
      if (typeof v === 'string') {
        try {
          text = JSON.stringify(JSON.parse(v));
        } catch (e) {
          throw new InvalidParamError(`${param}.json`, `${param}.json is not valid JSON: ${(e as Error).message}`);
        }
      } else if (typeof v === 'object' && !Array.isArray(v)) {
        text = JSON.stringify(v);
      } else if (typeof v === 'boolean') {
        text = JSON.stringify(v);
      } else {
        throw new InvalidParamError(`${param}.json`, `${param}.json must be a JSON schema (an object or its JSON text)`);
      }
      break;
    }
    case 'jsonObject':
      if (v !== true) throw new InvalidParamError(`${param}.jsonObject`, `${param}.jsonObject must be true`);
      text = '';
      break;
    case 'regex':
    case 'grammar':
      if (typeof v !== 'string' || v.length === 0) throw new InvalidParamError(`${param}.${kind}`, `${param}.${kind} must be a non-empty string`);
      text = v;
      break;
    case 'choice': {
      if (!Array.isArray(v) || v.length === 0 || !v.every((c) => typeof c === 'string')) {
        throw new InvalidParamError(`${param}.choice`, `${param}.choice must be a non-empty array of strings`);
      }
      text = choiceGrammar(v as string[]);
      break;
    }
  }
  if (text.length > MAX_TEXT) throw new InvalidParamError(`${param}.${kind}`, `${param}.${kind} is too long (over ${MAX_TEXT} characters)`);
  const usesWhitespace = kind === 'json' || kind === 'jsonObject';
  return { kind, text, anyWhitespace, key: `${kind}${usesWhitespace && !anyWhitespace ? ':compact' : ''}\u0000${text}` };
}

/** `root ::= "a" | "b"`: each choice as an EBNF string literal. */
function choiceGrammar(choices: string[]): string {
  return `root ::= ${choices.map(ebnfString).join(' | ')}`;
}

/** An EBNF string literal: JSON's escapes are the ones XGrammar's EBNF reads. */
export function ebnfString(s: string): string {
  return JSON.stringify(s);
}
