// One chat choice's answer read for tool calls as it is generated: what content may be streamed so
// far, and at the end the content, the calls (with fresh ids) and the finish reason. Answers to a
// forced choice are JSON the constraint shaped (read by forcedToolCalls); `auto` answers go through
// the family's parser, over the answer's text with special tokens spelled out.

import type { Tokenizer, StreamDecoder } from '../../model/tokenizer-types.js';
import type { ToolCallParser } from './tool-parsers.js';
import { forcedToolCalls, type ToolCallText, type ToolRequest } from './tool-request.js';

/** What a chat request with tools needs at answer time. */
export interface ToolPlan {
  request: ToolRequest;
  /** The family's parser, for `auto`; undefined when the template's format is unknown (answers stay text). */
  parser?: ToolCallParser;
}

/** OpenAI's tool call object. */
export interface ApiToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface FinishedToolAnswer {
  content: string | null;
  toolCalls: ApiToolCall[];
  /** 'tool_calls' when the answer called tools (a named function's call finishes with 'stop', as vLLM does). */
  finishReason?: 'tool_calls';
}

export class ToolAnswer {
  /** The answer with special tokens spelled out, end-of-generation tokens left out. */
  private raw = '';
  private readonly decoder: StreamDecoder | undefined;
  private sent = 0;

  constructor(
    private readonly plan: ToolPlan,
    private readonly tokenizer: Tokenizer | null,
  ) {
    this.decoder = tokenizer?.streamDecoder({ skipSpecial: false });
  }

  private get forced(): boolean {
    return this.plan.request.choice === 'required' || typeof this.plan.request.choice === 'object';
  }

  /** Whether answers are read for calls at all (`none`, or `auto` without a parser, stay text). */
  get active(): boolean {
    return this.forced || (this.plan.request.choice === 'auto' && this.plan.parser !== undefined);
  }

  /** Adds a step's tokens; returns content that can be streamed now ('' while a call may be starting). */
  push(tokenIds: readonly number[], text: string): string {
    if (!this.decoder || !this.tokenizer) this.raw += text;
    else for (const id of tokenIds) if (!this.tokenizer.eogIds.has(id)) this.raw += this.decoder.push(id);
    if (this.forced) return '';
    const upTo = this.plan.parser!.holdFrom(this.raw);
    if (upTo <= this.sent) return '';
    const out = this.raw.slice(this.sent, upTo);
    this.sent = upTo;
    return out;
  }

  /** The whole answer: content, calls, and (for streams) the content not yet sent. */
  finish(): FinishedToolAnswer & { unsentContent: string } {
    if (this.decoder) this.raw += this.decoder.flush();
    const req = this.plan.request;
    let calls: ToolCallText[] = [];
    let content: string | null = this.raw;
    if (this.forced) {
      const forced = forcedToolCalls(req, this.raw);
      if (forced) {
        calls = forced;
        content = null;
      }
    } else {
      const parsed = this.plan.parser!.parse(this.raw);
      calls = parsed.calls;
      if (calls.length > 0) content = parsed.content;
    }
    if (calls.length === 0) {
      return { content, toolCalls: [], unsentContent: this.raw.slice(this.sent) };
    }
    const newId = this.plan.parser?.newCallId ?? (() => `call_${Math.random().toString(36).slice(2, 11)}`);
    const toolCalls = calls.map((c) => ({ id: newId(), type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));
    // Content before the calls that was held back goes out with them.
    const unsent = content !== null && content.length > this.sent ? content.slice(this.sent) : '';
    return {
      content,
      toolCalls,
      ...(typeof req.choice === 'object' ? {} : { finishReason: 'tool_calls' as const }),
      unsentContent: unsent,
    };
  }
}
