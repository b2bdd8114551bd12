// Stepwise vs llama.cpp on the same GGUF files, side by side in one run (the kernels issue's table):
// decode throughput at 1, 32 and 64 concurrent sequences and 512-token prompt throughput, for the
// 110m preset in every dtype the targets name (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). Both
// engines use the same thread count. The prompt is also run on one thread, for Stepwise's 2-thread
// scaling (two threads / one thread).
//
//   npx tsx bench/vs-llamacpp.ts [--dtypes f32,q4_k] [--concurrency 1,32,64] [--output-len 64] [--threads 2]
//
// Run it on a quiet machine: llama.cpp's threads spin-wait for each other and collapse when another
// process takes a core. Prints a Markdown table and writes reports/vs-llamacpp.json.
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../src/model/make-model.js';
import { runBench } from '../src/cli/bench.js';
import { DTYPES } from '../src/model/kernels/quant.js';
import type { DType } from '../src/model/weights.js';

const { values } = parseArgs({
  options: {
    dtypes: { type: 'string', default: 'f32,f16,bf16,q8_0,q4_0,q4_k,q5_k,q6_k' },
    concurrency: { type: 'string', default: '1,32,64' },
    'output-len': { type: 'string', default: '64' },
    'prompt-len': { type: 'string', default: '512' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});

type Dtype = DType;
const dtypes = values.dtypes.split(',') as Dtype[];
for (const d of dtypes) if (!DTYPES.includes(d)) throw new Error(`unknown dtype ${d}; use ${DTYPES.join(',')}`);
const concurrency = values.concurrency.split(',').map(Number);
const silent = { write: () => true };
const scratch = mkdtempSync(join(tmpdir(), 'stepwise-vs-llamacpp-'));

interface Side { stepwise: number; llamacpp: number }
async function measure(model: string, args: string[], threads = values.threads, peer = true): Promise<{ ours: RunJson; peer: RunJson }> {
  const json = join(scratch, 'r.json');
  const code = await runBench(['--model', model, '--threads', threads, ...(peer ? ['--peer', 'llama.cpp'] : []), '--no-progress', '--json', json, ...args], silent);
  if (code !== 0) throw new Error(`stepwise bench ${args.join(' ')} exited ${code}`);
  const r = JSON.parse(readFileSync(json, 'utf8'));
  return { ours: r.policies[0], peer: r.peer };
}
interface RunJson { output_throughput: number; duration_s: number; total_input_tokens: number }

mkdirSync('models', { recursive: true });
const rows: Array<{ dtype: Dtype; label: string; v: Side }> = [];
const scaling: Array<{ dtype: Dtype; ratio: number }> = [];
console.error(`threads ${values.threads}, load average ${loadavg()[0].toFixed(1)}`);
for (const dtype of dtypes) {
  const model = `models/110m-${dtype}.gguf`;
  if (!existsSync(model)) await makeModel({ preset: '110m', dtype, seed: 1, out: model });
  for (const c of concurrency) {
    const { ours, peer } = await measure(model, ['--workload', 'fixed', '--num-requests', String(c), '--input-len', '16', '--output-len', values['output-len'], '--max-num-seqs', String(c)]);
    rows.push({ dtype, label: `decode, ${c} seq`, v: { stepwise: ours.output_throughput, llamacpp: peer.output_throughput } });
    console.error(`${dtype} decode x${c}: stepwise ${ours.output_throughput.toFixed(1)} tok/s, llama.cpp ${peer.output_throughput.toFixed(1)} tok/s`);
  }
  const P = Number(values['prompt-len']);
  // Three different prompts one after another, one output token each: prompt tokens over the
  // run's duration (three prefills; the single decode steps add under 1%), which averages away the
  // first call's one-time costs (buffers, first touches of the KV cache) that one TTFT would carry.
  const promptArgs = ['--workload', 'fixed', '--num-requests', '3', '--input-len', String(P), '--output-len', '1', '--max-num-seqs', '1', '--max-num-batched-tokens', String(Math.max(2048, P))];
  const { ours, peer } = await measure(model, promptArgs);
  const pp = (r: RunJson) => r.total_input_tokens / r.duration_s;
  rows.push({ dtype, label: `prompt ${P}`, v: { stepwise: pp(ours), llamacpp: pp(peer) } });
  console.error(`${dtype} prompt ${P}: stepwise ${pp(ours).toFixed(1)} tok/s, llama.cpp ${pp(peer).toFixed(1)} tok/s`);
  if (Number(values.threads) > 1) {
    // Both sides of the ratio without llama.cpp in the process: its threads spin-wait after its
    // own runs, which slowed the next multi-threaded measurement here (not the one-thread one).
    const all = await measure(model, promptArgs, values.threads, false);
    const one = await measure(model, promptArgs, '1', false);
    scaling.push({ dtype, ratio: pp(all.ours) / pp(one.ours) });
    console.error(`${dtype} prompt ${P} without llama.cpp: stepwise ${pp(all.ours).toFixed(1)} tok/s on ${values.threads} threads, ${pp(one.ours).toFixed(1)} on 1`);
  }
}

const lines = ['| dtype | measure | Stepwise tok/s | llama.cpp tok/s | Stepwise / llama.cpp |', '|---|---|---:|---:|---:|'];
for (const r of rows) lines.push(`| ${r.dtype} | ${r.label} | ${r.v.stepwise.toFixed(1)} | ${r.v.llamacpp.toFixed(1)} | ${(r.v.stepwise / r.v.llamacpp).toFixed(2)}x |`);
if (scaling.length > 0) {
  lines.push('', `| dtype | prompt ${values['prompt-len']}: ${values.threads} threads / 1 thread (Stepwise) |`, '|---|---:|');
  for (const s of scaling) lines.push(`| ${s.dtype} | ${s.ratio.toFixed(2)}x |`);
}
console.log(lines.join('\n'));
mkdirSync('reports', { recursive: true });
writeFileSync('reports/vs-llamacpp.json', JSON.stringify({ threads: Number(values.threads), loadavg: loadavg(), rows, scaling }, null, 2));
