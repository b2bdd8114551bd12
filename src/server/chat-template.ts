// Renders chat messages into one prompt with the model's own template (GGUF
// `tokenizer.chat_template`, a Jinja template as Hugging Face ships it), via @huggingface/jinja.
//
// Models without a template get FALLBACK_CHAT_TEMPLATE: a plain transcript that any vocabulary can
// encode, since it uses no special tokens:
//
//     System: You are terse.
//     User: Hello
//     Assistant:
//
// Each message is one "<Role>: <content>" line; with add_generation_prompt the prompt ends with
// "Assistant:" so the model continues as the assistant.
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { invalidParam } from './errors.js';

export const FALLBACK_CHAT_TEMPLATE =
  '{%- for message in messages -%}' +
  '{{ message.role | capitalize }}: {{ message.content }}{{ "\\n" }}' +
  '{%- endfor -%}' +
  '{%- if add_generation_prompt -%}Assistant:{%- endif -%}';

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
  /** An assistant turn's tool calls, arguments parsed from their JSON text (templates print them as objects). */
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: unknown } }>;
  /** A tool turn: the call it answers. */
  tool_call_id?: string;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const MAX_MESSAGE_CHARS = 1_000_000;

/** Checks the shape of `messages` and flattens text-part content into plain strings. */
export function normalizeMessages(raw: unknown[]): ChatMessage[] {
  return raw.map((m, i) => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalidParam(where, `'${where}' must be an object with 'role' and 'content'`);
    const { role, content, name, tool_calls: toolCalls, tool_call_id: toolCallId } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw invalidParam(`${where}.role`, `'${where}.role' must be one of ${[...ROLES].join(', ')}`);
    }
    let text: string;
    if (typeof content === 'string') text = content;
    else if (content === null || content === undefined) {
      if (role !== 'assistant' && role !== 'tool') throw invalidParam(`${where}.content`, `'${where}.content' is required`);
      text = '';
    } else if (Array.isArray(content)) {
      text = content
        .map((part, j) => {
          const p = part as Record<string, unknown> | null;
          if (typeof p !== 'object' || p === null || p.type !== 'text' || typeof p.text !== 'string') {
            throw invalidParam(`${where}.content[${j}]`, `'${where}.content[${j}]' must be a text part {type: 'text', text: string}; other part types are not supported`);
          }
          return p.text;
        })
        .join('');
    } else {
      throw invalidParam(`${where}.content`, `'${where}.content' must be a string or an array of text parts`);
    }
    if (text.length > MAX_MESSAGE_CHARS) throw invalidParam(`${where}.content`, `'${where}.content' is too long`);
    const msg: ChatMessage = { role, content: text };
    if (typeof name === 'string') msg.name = name;
    if (toolCalls != null) {
      if (role !== 'assistant') throw invalidParam(`${where}.tool_calls`, `'${where}.tool_calls' is only allowed on assistant messages`);
      msg.tool_calls = parseToolCalls(toolCalls, `${where}.tool_calls`);
    }
    if (toolCallId != null) {
      if (typeof toolCallId !== 'string') throw invalidParam(`${where}.tool_call_id`, `'${where}.tool_call_id' must be a string`);
      msg.tool_call_id = toolCallId;
    }
    if (role === 'tool' && msg.tool_call_id === undefined) throw invalidParam(`${where}.tool_call_id`, `'${where}.tool_call_id' is required for tool messages`);
    return msg;
  });
}

/** An assistant message's tool_calls, with each call's arguments read from JSON text into a value. */
function parseToolCalls(raw: unknown, where: string): NonNullable<ChatMessage['tool_calls']> {
  if (!Array.isArray(raw)) throw invalidParam(where, `'${where}' must be an array`);
  return raw.map((c, i) => {
    const o = c as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } } | null;
    if (typeof o !== 'object' || o === null || typeof o.function !== 'object' || o.function === null || typeof o.function.name !== 'string') {
      throw invalidParam(`${where}[${i}]`, `'${where}[${i}]' must be {id, type: 'function', function: {name, arguments}}`);
    }
    const args = o.function.arguments ?? '{}';
    let value: unknown = args;
    if (typeof args === 'string') {
      try {
        value = JSON.parse(args);
      } catch {
        // Not JSON: the template gets the text as it came.
      }
    }
    return { id: typeof o.id === 'string' ? o.id : '', type: 'function' as const, function: { name: o.function.name, arguments: value } };
  });
}

/** What a request may add to the template's variables beyond the messages. */
export interface ChatRenderOptions {
  /** Tool definitions (OpenAI's `tools`), for templates that describe them to the model. */
  tools?: unknown[];
  /**
   * Extra template variables (vLLM's `chat_template_kwargs`), e.g. `{ enable_thinking: false }` for
   * Qwen3. They cannot replace messages, tools, add_generation_prompt or the special tokens.
   */
  kwargs?: Record<string, unknown>;
}

export class ChatTemplate {
  private readonly template: Template;
  readonly isFallback: boolean;

  /** Throws if the model's template does not parse, so a broken model file fails at startup. */
  constructor(source: string | undefined, private readonly tokenizer: Tokenizer | null) {
    this.isFallback = source === undefined;
    this.template = new Template(source ?? FALLBACK_CHAT_TEMPLATE);
  }

  /**
   * The prompt text for `messages`, ready to encode, with the variables Hugging Face's
   * apply_chat_template gives templates (@huggingface/jinja itself defines raise_exception and
   * strftime_now, which templates call).
   * Template errors (e.g. roles out of order, raise_exception) are 400s naming the error.
   */
  render(messages: ChatMessage[], opts: ChatRenderOptions = {}): string {
    const tok = this.tokenizer;
    const pieceOf = (id: number | undefined): string => (tok && id !== undefined ? tok.tokenText(id) : '');
    const kwargs = opts.kwargs ?? {};
    if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) {
      throw invalidParam('chat_template_kwargs', "'chat_template_kwargs' must be an object");
    }
    try {
      return this.template.render({
        ...kwargs,
        messages,
        ...(opts.tools ? { tools: opts.tools } : {}),
        add_generation_prompt: true,
        bos_token: pieceOf(tok?.bosId),
        eos_token: pieceOf(tok?.eosId),
      });
    } catch (e) {
      throw invalidParam('messages', `the chat template rejected the messages: ${(e as Error).message}`);
    }
  }

  /** Renders and encodes; BOS is added unless the template already wrote it. */
  encode(messages: ChatMessage[], opts: ChatRenderOptions = {}): number[] {
    const tok = this.tokenizer;
    if (!tok) throw invalidParam('messages', 'this model has no tokenizer, so chat is unavailable: use /v1/completions with token ids');
    const text = this.render(messages, opts);
    const bosText = tok.bosId !== undefined ? tok.tokenText(tok.bosId) : '';
    const templateWroteBos = bosText !== '' && text.startsWith(bosText);
    return tok.encode(text, { addBos: tok.addBos && !templateWroteBos, parseSpecial: true });
  }
}

/** The chat template stored in a GGUF's metadata, if any. */
export function chatTemplateSource(metadata: Record<string, unknown>): string | undefined {
  const t = metadata['tokenizer.chat_template'];
  return typeof t === 'string' && t.length > 0 ? t : undefined;
}
