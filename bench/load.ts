// Loading a real-sized model: an 8B-shaped Q4_K file (Llama 3 8B's shape, written by make-model)
// is loaded through the engine (LLM.load: header on the main thread, weights in the compute
// worker), then one request runs. Prints load time, resident memory after load and after the
// first request, and the first-token time, for the memory-mapped path and for the read path
// (STEPWISE_NO_MMAP=1), each in a fresh process so neither sees the other's page cache state in
// its RSS. Not a test: nothing here asserts.
//
//   npx tsx bench/load.ts [--file models/8b-q4_k.gguf] [--dtype q4_k] [--keep]
//
// The file (about 4.6 GiB) is written first unless it exists; --keep leaves it for the next run.

import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    file: { type: 'string', default: 'models/8b-q4_k.gguf' },
    dtype: { type: 'string', default: 'q4_k' },
    keep: { type: 'boolean', default: false },
    child: { type: 'boolean', default: false },
  },
});
const file = args.file!;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

if (args.child) {
  // One measurement, in this process.
  const { LLM } = await import('../src/llm.js');
  const t0 = performance.now();
  const llm = await LLM.load(file, { maxNumSeqs: 1, kvCacheMemory: 256 * 2 ** 20, maxModelLen: 256 });
  const loadMs = performance.now() - t0;
  const rssLoad = process.memoryUsage().rss;
  const t1 = performance.now();
  await llm.generate(Array.from({ length: 16 }, (_, i) => 1 + i * 97), { maxTokens: 1, temperature: 0 });
  const firstMs = performance.now() - t1;
  const rssFirst = process.memoryUsage().rss;
  await llm.close();
  process.stdout.write(JSON.stringify({ loadMs, rssLoad, firstMs, rssFirst, backend: llm.backend }) + '\n');
  process.exit(0);
}

if (!existsSync(file)) {
  const t = performance.now();
  execFileSync(process.execPath, ['bin/stepwise.js', 'make-model', '--preset', '8b', '--dtype', args.dtype!, '--seed', '1', '--out', file], { stdio: 'inherit' });
  console.log(`wrote ${file} in ${((performance.now() - t) / 1000).toFixed(0)} s`);
}
const size = statSync(file).size;
console.log(`# Loading an 8B-shaped ${args.dtype} GGUF (${(size / 2 ** 30).toFixed(2)} GiB), ${cpus()[0]?.model ?? 'unknown CPU'}, ${new Date().toISOString().slice(0, 10)}\n`);
console.log('| path | load (s) | RSS after load | first token: 16-token prompt (s) | RSS after first request |');
console.log('|---|---:|---:|---:|---:|');
for (const [name, env] of [['memory-mapped', {}], ['read (STEPWISE_NO_MMAP=1)', { STEPWISE_NO_MMAP: '1' }]] as const) {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/load.ts', '--child', '--file', file], { env: { ...process.env, ...env }, encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { loadMs: number; rssLoad: number; firstMs: number; rssFirst: number; backend: string };
  console.log(`| ${name} | ${(r.loadMs / 1000).toFixed(2)} | ${mib(r.rssLoad)} | ${(r.firstMs / 1000).toFixed(2)} | ${mib(r.rssFirst)} |`);
}
if (!args.keep) rmSync(file);
