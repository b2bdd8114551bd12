// Tool calls read back out of a model's answer, one parser per family's format (vLLM's
// --tool-call-parser names): the text is the answer with special tokens spelled out (their markers
// are special tokens in some vocabularies) and end-of-generation tokens left out.
//
//   hermes       Qwen2.5 / Qwen3 / Hermes:  <tool_call>{"name": ..., "arguments": {...}}</tool_call> (repeated)
//   llama3_json  Llama 3.1-3.3:             [<|python_tag|>]{"name": ..., "parameters": {...}} (several joined by ';')
//   mistral      Mistral:                   [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
//                                           or, in newer vocabularies, [TOOL_CALLS]name[ARGS]{...}
//
// An answer whose calls do not parse is returned as plain content, as vLLM does.

import { randomBytes } from 'node:crypto';
import type { ToolCallText } from './tool-request.js';

export interface ParsedAnswer {
  /** Text outside the tool calls; null when there is none. */
  content: string | null;
  calls: ToolCallText[];
}

export interface ToolCallParser {
  readonly name: string;
  /**
   * Where in the answer so far a tool call has begun or may still begin: the text before it is
   * plain content and can be streamed; text.length when nothing is held.
   */
  holdFrom(text: string): number;
  /** The complete answer read into content and calls. */
  parse(text: string): ParsedAnswer;
  /** A new call id, in the form this family's template accepts back. */
  newCallId(): string;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomAlnum(n: number): string {
  const bytes = randomBytes(n);
  let s = '';
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return s;
}

const openAiCallId = (): string => `call_${randomAlnum(24)}`;

/** Index of `marker` in text, or of a tail of text that could still grow into it; else text.length. */
function markerHold(text: string, marker: string): number {
  const i = text.indexOf(marker);
  if (i >= 0) return i;
  for (let k = Math.min(marker.length - 1, text.length); k > 0; k--) {
    if (text.endsWith(marker.slice(0, k))) return text.length - k;
  }
  return text.length;
}

function contentOf(text: string): string | null {
  const t = text.trim();
  return t === '' ? null : t;
}

/** {name, arguments | parameters} as a call; undefined when v is not one. */
function callOf(v: unknown): ToolCallText | undefined {
  const o = v as { name?: unknown; arguments?: unknown; parameters?: unknown } | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o) || typeof o.name !== 'string') return undefined;
  const args = o.arguments ?? o.parameters ?? {};
  return { name: o.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) };
}

/**
 * The JSON values at the start of text, one after another, separated by whitespace or `sep`;
 * undefined unless all of text is such values.
 */
export function jsonValues(text: string, sep = ''): unknown[] | undefined {
  const out: unknown[] = [];
  let i = 0;
  const skip = () => {
    while (i < text.length && (/\s/.test(text[i]!) || (sep !== '' && text[i] === sep))) i++;
  };
  skip();
  while (i < text.length) {
    const end = jsonEnd(text, i);
    if (end < 0) return undefined;
    try {
      out.push(JSON.parse(text.slice(i, end)));
    } catch {
      return undefined;
    }
    i = end;
    skip();
  }
  return out;
}

/** End of the JSON object or array starting at text[start] (brackets matched outside strings); -1 if it does not close. */
function jsonEnd(text: string, start: number): number {
  const open = text[start];
  if (open !== '{' && open !== '[') return -1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

const hermes: ToolCallParser = {
  name: 'hermes',
  holdFrom: (text) => markerHold(text, '<tool_call>'),
  parse(text) {
    const first = text.indexOf('<tool_call>');
    if (first < 0) return { content: contentOf(text), calls: [] };
    const calls: ToolCallText[] = [];
    // A last call cut off before its closing tag still counts when its JSON is whole.
    for (const m of text.slice(first).matchAll(/<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g)) {
      const values = jsonValues(m[1]!);
      const call = values?.length === 1 ? callOf(values[0]) : undefined;
      if (!call) return { content: contentOf(text), calls: [] };
      calls.push(call);
    }
    return { content: contentOf(text.slice(0, first)), calls };
  },
  newCallId: openAiCallId,
};

const PYTHON_TAG = '<|python_tag|>';

const llama3Json: ToolCallParser = {
  name: 'llama3_json',
  // Llama 3 answers with a call or with text, never both: a call starts the answer.
  holdFrom(text) {
    const t = text.trimStart();
    if (t === '' || t.startsWith('{') || t.startsWith(PYTHON_TAG) || PYTHON_TAG.startsWith(t)) return 0;
    return text.length;
  },
  parse(text) {
    let t = text.trim();
    if (t.startsWith(PYTHON_TAG)) t = t.slice(PYTHON_TAG.length);
    const values = t.startsWith('{') ? jsonValues(t, ';') : undefined;
    const calls = values?.map(callOf);
    if (!calls || calls.length === 0 || calls.some((c) => c === undefined)) return { content: contentOf(text), calls: [] };
    return { content: null, calls: calls as ToolCallText[] };
  },
  newCallId: openAiCallId,
};

const TOOL_CALLS = '[TOOL_CALLS]';

const mistral: ToolCallParser = {
  name: 'mistral',
  holdFrom: (text) => markerHold(text, TOOL_CALLS),
  parse(text) {
    const first = text.indexOf(TOOL_CALLS);
    if (first < 0) return { content: contentOf(text), calls: [] };
    const calls: ToolCallText[] = [];
    for (const part of text.slice(first + TOOL_CALLS.length).split(TOOL_CALLS)) {
      const p = part.trim();
      const args = p.indexOf('[ARGS]');
      if (args >= 0) {
        // name[ARGS]{...} (an optional [CALL_ID]id after the name is dropped)
        const name = p.slice(0, args).replace(/\[CALL_ID\].*$/s, '').trim();
        const values = jsonValues(p.slice(args + '[ARGS]'.length));
        if (name === '' || values?.length !== 1) return { content: contentOf(text), calls: [] };
        calls.push({ name, arguments: JSON.stringify(values[0]) });
        continue;
      }
      const values = jsonValues(p);
      const list = values?.length === 1 && Array.isArray(values[0]) ? values[0] : values;
      const parsed = list?.map(callOf);
      if (!parsed || parsed.length === 0 || parsed.some((c) => c === undefined)) return { content: contentOf(text), calls: [] };
      calls.push(...(parsed as ToolCallText[]));
    }
    return { content: contentOf(text.slice(0, first)), calls };
  },
  // Mistral's templates accept back only 9 alphanumeric characters.
  newCallId: () => randomAlnum(9),
};

export const TOOL_CALL_PARSERS: Readonly<Record<string, ToolCallParser>> = { hermes, llama3_json: llama3Json, mistral };

/**
 * The parser for a chat template, judged by the markers it writes; undefined for a family whose
 * format no parser here reads.
 */
export function toolParserForTemplate(template: string | undefined): ToolCallParser | undefined {
  if (!template) return undefined;
  if (template.includes('<tool_call>')) return hermes;
  if (template.includes(TOOL_CALLS)) return mistral;
  if (template.includes(PYTHON_TAG) || template.includes('<|start_header_id|>')) return llama3Json;
  return undefined;
}
