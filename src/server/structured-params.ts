// The ways an OpenAI-compatible request asks for constrained output, mapped onto the library's
// StructuredOutputsParams: OpenAI's `response_format` (json_object, json_schema), vLLM's
// `structured_outputs` object, and vLLM's older `guided_json` / `guided_regex` / `guided_choice` /
// `guided_grammar` fields. At most one of them may constrain a request.

import type { StructuredOutputsParams } from '../engine/structured/constraint.js';
import { invalidParam } from './errors.js';

export interface StructuredBody {
  response_format?: { type?: unknown; json_schema?: unknown } | null;
  structured_outputs?: Record<string, unknown> | null;
  guided_json?: unknown;
  guided_regex?: unknown;
  guided_choice?: unknown;
  guided_grammar?: unknown;
  guided_whitespace_pattern?: unknown;
}

/** A constraint and the HTTP field it came from (named by errors about it). */
export interface RequestedConstraint {
  params: StructuredOutputsParams;
  param: string;
}

const STRUCTURED_KEYS: Record<string, keyof StructuredOutputsParams> = {
  json: 'json',
  regex: 'regex',
  choice: 'choice',
  grammar: 'grammar',
  json_object: 'jsonObject',
  disable_any_whitespace: 'disableAnyWhitespace',
};

export function parseStructuredOutputs(body: StructuredBody): RequestedConstraint | undefined {
  const found: RequestedConstraint[] = [];
  const rf = body.response_format;
  if (rf != null) {
    if (typeof rf !== 'object' || Array.isArray(rf)) throw invalidParam('response_format', "'response_format' must be an object");
    switch (rf.type) {
      case 'text':
        break;
      case 'json_object':
        found.push({ params: { jsonObject: true }, param: 'response_format' });
        break;
      case 'json_schema': {
        const js = rf.json_schema as Record<string, unknown> | null | undefined;
        if (typeof js !== 'object' || js === null || Array.isArray(js)) {
          throw invalidParam('response_format.json_schema', "'response_format.json_schema' is required for type 'json_schema': {name, schema, strict}");
        }
        if (typeof js.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
          throw invalidParam('response_format.json_schema.name', "'response_format.json_schema.name' must be 1-64 characters of a-z, A-Z, 0-9, _ and -");
        }
        const schema = js.schema ?? {};
        if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
          throw invalidParam('response_format.json_schema.schema', "'response_format.json_schema.schema' must be a JSON schema object");
        }
        found.push({ params: { json: schema as Record<string, unknown> }, param: 'response_format.json_schema.schema' });
        break;
      }
      default:
        throw invalidParam('response_format.type', "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
    }
  }
  const so = body.structured_outputs;
  if (so != null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw invalidParam('structured_outputs', "'structured_outputs' must be an object");
    const params: Record<string, unknown> = {};
    let kind = '';
    for (const [k, v] of Object.entries(so)) {
      if (v === null || v === undefined) continue;
      const lib = STRUCTURED_KEYS[k];
      if (!lib) {
        throw invalidParam(`structured_outputs.${k}`, `'structured_outputs.${k}' is not supported; use one of json, regex, choice, grammar, json_object`);
      }
      params[lib] = v;
      if (lib !== 'disableAnyWhitespace' && v !== false) kind = k;
    }
    if (kind !== '') found.push({ params, param: `structured_outputs.${kind}` });
  }
  const guided: Array<[string, keyof StructuredOutputsParams]> = [
    ['guided_json', 'json'],
    ['guided_regex', 'regex'],
    ['guided_choice', 'choice'],
    ['guided_grammar', 'grammar'],
  ];
  for (const [field, lib] of guided) {
    const v = body[field as keyof StructuredBody];
    if (v != null) found.push({ params: { [lib]: v }, param: field });
  }
  if (found.length > 1) {
    throw invalidParam(found[1]!.param, `only one output constraint may be given, got ${found.map((f) => `'${f.param}'`).join(' and ')}`);
  }
  return found[0];
}
