// Conformance with the Gateway API Inference Extension's model-server protocol (the list the
// endpoint picker reads, vendored in test/fixtures/gie): each metric under its name, with its type
// and its meaning checked against the engine while requests queue and run; the cache configuration
// labels for the prefix-cache scorer; the OpenAI endpoints. LoRA does not apply (Stepwise serves no
// adapters), so its metric must be absent rather than claim adapters.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { extra, makeTinyModel, slowSteps, startServer, waitFor, type TestServer } from './server-helpers.js';

interface ProtocolMetric {
  metric: string;
  type: string;
  vllm: string;
  label?: string;
  optional?: boolean;
}
const protocol = JSON.parse(readFileSync('test/fixtures/gie/model-server-protocol.json', 'utf8')) as {
  endpoints: string[];
  metrics: ProtocolMetric[];
  lora: { metric: string };
};

/** Prometheus exposition: the TYPE of each family and every sample with its labels. */
function scrape(text: string) {
  const types = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(line)!;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { types, samples, value: (name: string) => samples.find((s) => s.name === name)?.value };
}

describe('GIE model-server protocol', () => {
  let model: { path: string; cleanup: () => void };
  let s: TestServer;
  before(async () => {
    model = await makeTinyModel();
    s = await startServer(model.path, { inProcess: true, maxNumSeqs: 2, numBlocks: 64, blockSize: 8 }, { modelName: 'tiny' });
  });
  after(async () => {
    await s?.close();
    model?.cleanup();
  });

  const metrics = async () => scrape(await (await fetch(`${s.baseURL}/metrics`)).text());

  it('exposes every metric of the protocol under its name and type', async () => {
    const m = await metrics();
    for (const p of protocol.metrics) {
      assert.equal(m.types.get(p.vllm), p.type, `${p.metric} (${p.vllm}) is a ${p.type}`);
      const sample = m.samples.find((x) => x.name === p.vllm);
      assert.ok(sample, `${p.vllm} has a sample`);
      if (p.label) assert.ok(p.label in sample.labels, `${p.vllm} carries the ${p.label} label`);
    }
    assert.equal(m.samples.some((x) => x.name === protocol.lora.metric), false, 'no LoRA metric: Stepwise serves no adapters');
  });

  it('reports the cache configuration the engine really has', async () => {
    const m = await metrics();
    const info = m.samples.find((x) => x.name === 'vllm:cache_config_info')!;
    assert.equal(info.labels.block_size, '8');
    assert.equal(info.labels.num_gpu_blocks, '64');
    assert.equal(info.labels.enable_prefix_caching, 'true');
    assert.equal(info.value, 1);
  });

  it('counts queued and running requests and KV use as the engine sees them', async () => {
    const restore = slowSteps(s.llm, 20);
    try {
      // Two slots: of four requests two run and two queue.
      const reqs = Array.from({ length: 4 }, (_, i) =>
        s.client.completions.create(extra({ model: s.model, prompt: `request ${i}`, max_tokens: 30 }, { ignore_eos: true })),
      );
      await waitFor(() => s.llm.engine.stats().running === 2 && s.llm.engine.stats().waiting === 2, 5000, 'two running, two waiting');
      const m = await metrics();
      assert.equal(m.value('vllm:num_requests_running'), 2);
      assert.equal(m.value('vllm:num_requests_waiting'), 2);
      const kv = m.value('vllm:kv_cache_usage_perc')!;
      assert.ok(kv > 0 && kv <= 1, `KV use ${kv} is a fraction in (0, 1]`);
      await Promise.all(reqs);
    } finally {
      restore();
    }
    const m = await metrics();
    assert.equal(m.value('vllm:num_requests_running'), 0);
    assert.equal(m.value('vllm:num_requests_waiting'), 0);
    assert.equal(m.value('vllm:kv_cache_usage_perc'), 0);
  });

  it('serves the OpenAI endpoints the protocol requires', async () => {
    for (const path of protocol.endpoints) {
      const body = path.includes('chat') ? { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } : { prompt: 'hi', max_tokens: 2 };
      const r = await fetch(`${s.baseURL}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(r.status, 200, path);
    }
  });
});
