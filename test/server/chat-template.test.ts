// Chat prompts: the GGUF's Jinja template when there is one, the documented fallback otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatTemplate, FALLBACK_CHAT_TEMPLATE, normalizeMessages, chatTemplateSource } from '../../src/server/chat-template.js';
import { ApiError } from '../../src/server/errors.js';
import { byteTokenizer } from './fake-tokenizer.js';

const tok = byteTokenizer();

test('fallback template renders a plain transcript ending with the assistant cue', () => {
  const t = new ChatTemplate(undefined, tok);
  assert.equal(t.isFallback, true);
  const text = t.render(normalizeMessages([{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hi' }]));
  assert.equal(text, 'System: Be terse.\nUser: Hi\nAssistant:');
  assert.ok(FALLBACK_CHAT_TEMPLATE.includes('add_generation_prompt'));
  // BOS is added by the tokenizer since the fallback writes none.
  assert.deepEqual(t.encode([{ role: 'user', content: 'A' }]).slice(0, 2), [1, 'U'.charCodeAt(0) + 3]);
});

test("a model's template is used, with bos_token, and BOS is not doubled", () => {
  const src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
  assert.equal(chatTemplateSource({ 'tokenizer.chat_template': src }), src);
  assert.equal(chatTemplateSource({}), undefined);
  const t = new ChatTemplate(src, tok);
  assert.equal(t.render([{ role: 'user', content: 'x' }]), '<s>[user]x[assistant]');
  const ids = t.encode([{ role: 'user', content: 'x' }]);
  assert.equal(ids[0], 1);
  assert.notEqual(ids[1], 1);
});

test('template errors (raise_exception) and bad messages are 400s naming the field', () => {
  const strict = new ChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok", tok);
  assert.throws(
    () => strict.render([{ role: 'assistant', content: 'x' }]),
    (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === 'messages' && /must be from the user/.test(e.message),
  );
  const bad: Array<[unknown, string]> = [
    [42, 'messages[0]'],
    [{ role: 'wizard', content: 'x' }, 'messages[0].role'],
    [{ role: 'user' }, 'messages[0].content'],
    [{ role: 'user', content: 7 }, 'messages[0].content'],
    [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }, 'messages[0].content[0]'],
  ];
  for (const [m, param] of bad) {
    assert.throws(() => normalizeMessages([m]), (e: unknown) => e instanceof ApiError && e.param === param, JSON.stringify(m));
  }
  assert.deepEqual(normalizeMessages([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }]), [{ role: 'user', content: 'ab' }]);
  assert.deepEqual(normalizeMessages([{ role: 'assistant', content: null }]), [{ role: 'assistant', content: '' }]);
});

test('chat without a tokenizer is refused clearly', () => {
  const t = new ChatTemplate(undefined, null);
  assert.throws(() => t.encode([{ role: 'user', content: 'x' }]), (e: unknown) => e instanceof ApiError && /no tokenizer/.test(e.message));
});

test('typical template constructs render: ChatML-style and a Llama-2-style system fold', () => {
  const chatml =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const msgs = normalizeMessages([{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }]);
  assert.equal(new ChatTemplate(chatml, tok).render(msgs), '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n');

  // The system prompt folded into the first user turn; roles must alternate (checked with loop.index0).
  const llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}" +
    "{% for m in msgs %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate user/assistant') }}{% endif %}" +
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (('<<SYS>>' + sys + '<</SYS>> ') if loop.first and sys else '') + m['content'].strip() + ' [/INST]' }}" +
    "{% else %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  const t = new ChatTemplate(llama2, tok);
  assert.equal(t.render(msgs), '<s>[INST] <<SYS>>S<</SYS>> U [/INST]');
  const turns = normalizeMessages([{ role: 'user', content: 'a ' }, { role: 'assistant', content: ' b' }, { role: 'user', content: 'c' }]);
  assert.equal(t.render(turns), '<s>[INST] a [/INST] b </s><s>[INST] c [/INST]');
  assert.throws(() => t.render(normalizeMessages([{ role: 'assistant', content: 'x' }])), (e: unknown) => e instanceof ApiError && /alternate/.test(e.message));
  // The template wrote BOS itself, so encode() does not add a second one; special tokens are parsed.
  const ids = t.encode(turns);
  assert.equal(ids.filter((id) => id === 1).length, 2);
  assert.equal(ids.filter((id) => id === 2).length, 1);
});
