// `stepwise serve` as a real process: it logs the kernels in use, serves, and on SIGTERM stops
// accepting, lets the in-flight stream finish, and exits 0. Flag mistakes exit before loading.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import OpenAI from 'openai';
import { runServe } from '../../src/cli/serve.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { extra, makeTinyModel } from './server-helpers.js';

describe('stepwise serve', () => {
  let model: { path: string; cleanup: () => void };
  before(async () => {
    model = await makeTinyModel();
  });
  after(() => model?.cleanup());

  it('rejects bad flags with a UsageError before loading anything', async () => {
    await assert.rejects(runServe([]), (e: unknown) => e instanceof UsageError && /--model is required/.test(e.message));
    await assert.rejects(runServe(['--model', '/nonexistent.gguf']), (e: unknown) => e instanceof UsageError && /no such file/.test(e.message));
    await assert.rejects(runServe(['--model', model.path, '--port', 'http']), (e: unknown) => e instanceof UsageError && /--port/.test(e.message));
    await assert.rejects(runServe(['--model', model.path, '--max-num-seqs', '0']), (e: unknown) => e instanceof UsageError && /--max-num-seqs/.test(e.message));
    await assert.rejects(runServe(['--model', model.path, '--log-level', 'loud']), (e: unknown) => e instanceof UsageError && /--log-level/.test(e.message));
  });

  describe('a running server process', () => {
    let child: ChildProcess;
    let stderr = '';
    let baseURL: string;

    before(async () => {
      child = spawn(process.execPath, ['--import', 'tsx', 'test/server/serve-entry.ts', 'serve', '--model', model.path, '--port', '0', '--threads', '1', '--max-num-seqs', '4'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr!.setEncoding('utf8');
      baseURL = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
        child.stderr!.on('data', (d: string) => {
          stderr += d;
          const m = /serving \S+ on (http:\/\/[^\s]+)/.exec(stderr);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
      });
    });
    after(() => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
    });

    it('logs the kernels backend, then drains on SIGTERM and exits 0', async () => {
      assert.match(stderr, /kernels: \S+/);
      const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
      const stream = await client.completions.create(extra({ model: 'tiny.gguf', prompt: 'Before the signal', max_tokens: 400, temperature: 0, stream: true as const }, { ignore_eos: true }));
      const exited = once(child, 'exit');
      let chunks = 0;
      let finish: string | null = null;
      for await (const c of stream) {
        if (chunks++ === 0) child.kill('SIGTERM');
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      // The in-flight stream ran to its end despite the signal. (400 tokens: long enough that the
      // signal lands while it runs even when both cores are busy; with 40 it could finish first.)
      assert.equal(finish, 'length');
      assert.ok(chunks >= 30, `got ${chunks} chunks`);
      const [code] = await exited;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /SIGTERM: draining 1 in-flight request/);
      assert.match(stderr, /stopped/);
      await assert.rejects(fetch(`${baseURL}/health`), 'the listener is closed');
    });
  });
});
