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
