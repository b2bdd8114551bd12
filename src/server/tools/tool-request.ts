// A chat request's tools: `tools`, `tool_choice` and `parallel_tool_calls` checked, and the
// constraint that enforces a forced choice. As in vLLM, `required` constrains the answer to a JSON
// array of {name, parameters} objects (one of the tools each) and a named function to that
// function's parameters; such answers are read back as JSON whatever the model family, while `auto`
// answers go through the family's own tool-call parser (tool-parsers.ts).

import type { StructuredOutputsParams } from '../../engine/structured/constraint.js';
import { invalidParam } from '../errors.js';

export interface ToolFunction {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
  strict?: boolean;
}

/** OpenAI's tool definition (only function tools exist). */
export interface ToolDef {
  type: 'function';
  function: ToolFunction;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { name: string };

export interface ToolRequest {
  tools: ToolDef[];
  choice: ToolChoice;
  /** Whether the model may call several tools in one answer (OpenAI's default: true). */
  parallel: boolean;
}

export interface ToolBody {
  tools?: unknown[] | null;
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The request's tools, or undefined when it has none. */
export function parseToolRequest(body: ToolBody): ToolRequest | undefined {
  const raw = body.tools ?? [];
  if (!Array.isArray(raw)) throw invalidParam('tools', "'tools' must be an array");
  const tools = raw.map((t, i) => parseTool(t, `tools[${i}]`));
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw invalidParam(`tools[${i}].function.name`, `tool name '${t.function.name}' is given twice`);
    names.add(t.function.name);
  });
  const choice = parseToolChoice(body.tool_choice, tools);
  if (tools.length === 0) return undefined;
  const parallel = body.parallel_tool_calls ?? true;
  if (typeof parallel !== 'boolean') throw invalidParam('parallel_tool_calls', "'parallel_tool_calls' must be a boolean");
  return { tools, choice, parallel };
}

function parseTool(t: unknown, where: string): ToolDef {
  const o = t as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw invalidParam(where, `'${where}' must be an object {type: 'function', function: {...}}`);
  if (o.type !== 'function') throw invalidParam(`${where}.type`, `'${where}.type' must be 'function'`);
  const f = o.function as Record<string, unknown> | null;
  if (typeof f !== 'object' || f === null || Array.isArray(f)) throw invalidParam(`${where}.function`, `'${where}.function' must be an object with a name`);
  if (typeof f.name !== 'string' || !NAME.test(f.name)) {
    throw invalidParam(`${where}.function.name`, `'${where}.function.name' must be 1-64 characters of a-z, A-Z, 0-9, _ and -`);
  }
  const fn: ToolFunction = { name: f.name };
  if (f.description != null) {
    if (typeof f.description !== 'string') throw invalidParam(`${where}.function.description`, `'${where}.function.description' must be a string`);
    fn.description = f.description;
  }
  if (f.parameters != null) {
    if (typeof f.parameters !== 'object' || Array.isArray(f.parameters)) {
      throw invalidParam(`${where}.function.parameters`, `'${where}.function.parameters' must be a JSON schema object`);
    }
    fn.parameters = f.parameters as Record<string, unknown>;
  }
  if (f.strict != null) fn.strict = f.strict === true;
  return { type: 'function', function: fn };
}

function parseToolChoice(c: unknown, tools: ToolDef[]): ToolChoice {
  if (c === undefined || c === null) return tools.length > 0 ? 'auto' : 'none';
  if (c === 'none' || c === 'auto' || c === 'required') {
    if (c !== 'none' && tools.length === 0) throw invalidParam('tool_choice', `'tool_choice' '${c}' needs 'tools'`);
    return c;
  }
  const o = c as { type?: unknown; function?: { name?: unknown } } | null;
  if (typeof o === 'object' && o !== null && o.type === 'function' && typeof o.function?.name === 'string') {
    const name = o.function.name;
    if (!tools.some((t) => t.function.name === name)) throw invalidParam('tool_choice', `'tool_choice' names function '${name}', which is not in 'tools'`);
    return { name };
  }
  throw invalidParam('tool_choice', "'tool_choice' must be 'none', 'auto', 'required' or {type: 'function', function: {name}}");
}

/** The parameters' schema of a tool; no schema means any object. */
function parametersSchema(t: ToolDef): Record<string, unknown> {
  return t.function.parameters ?? { type: 'object' };
}

/** The constraint that enforces `required` or a named function; none for `auto` and `none`. */
export function toolConstraint(req: ToolRequest): StructuredOutputsParams | undefined {
  const { choice } = req;
  if (typeof choice === 'object') {
    const tool = req.tools.find((t) => t.function.name === choice.name)!;
    return { json: parametersSchema(tool) };
  }
  if (choice !== 'required') return undefined;
  return {
    json: {
      type: 'array',
      minItems: 1,
      ...(req.parallel ? {} : { maxItems: 1 }),
      items: {
        anyOf: req.tools.map((t) => ({
          type: 'object',
          properties: { name: { type: 'string', enum: [t.function.name] }, parameters: parametersSchema(t) },
          required: ['name', 'parameters'],
        })),
      },
    },
  };
}

/** A call read back from an answer: the function's name and its arguments as JSON text. */
export interface ToolCallText {
  name: string;
  arguments: string;
}

/**
 * The calls of an answer to a forced choice (constrained by toolConstraint); undefined when the
 * text is not the complete JSON the constraint allows (the answer hit its length limit).
 */
export function forcedToolCalls(req: ToolRequest, text: string): ToolCallText[] | undefined {
  const choice = req.choice;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof choice === 'object') return [{ name: choice.name, arguments: JSON.stringify(value) }];
  if (!Array.isArray(value)) return undefined;
  const calls: ToolCallText[] = [];
  for (const v of value) {
    const o = v as { name?: unknown; parameters?: unknown };
    if (typeof o !== 'object' || o === null || typeof o.name !== 'string') return undefined;
    calls.push({ name: o.name, arguments: JSON.stringify(o.parameters ?? {}) });
  }
  return calls;
}
