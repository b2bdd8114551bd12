// Shared set-up for the server tests: a tiny generated model in a temp dir, a real server on
// loopback, and the official `openai` client pointed at it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { LLM, type LoadOptions } from '../../src/llm.js';
import { makeModel } from '../../src/model/make-model.js';
import { buildServer, type ServerOptions } from '../../src/server/app.js';
import type { ModelRunner } from '../../src/engine/types.js';

/** Writes the 'tiny' preset (synthetic SentencePiece vocabulary) into a fresh temp dir. */
export async function makeTinyModel(seed = 7): Promise<{ path: string; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-server-'));
  const path = join(dir, 'tiny.gguf');
  await makeModel({ preset: 'tiny', dtype: 'f32', seed, out: path });
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestServer {
  llm: LLM;
  /** The served model name, for the `model` field the client's types require. */
  model: string;
  app: FastifyInstance;
  baseURL: string;
  client: OpenAI;
  close(): Promise<void>;
}

/** Loads the model, serves it on 127.0.0.1 (a free port) and returns a client for it. */
export async function startServer(modelPath: string, load: LoadOptions = {}, server: ServerOptions = {}): Promise<TestServer> {
  const llm = await LLM.load(modelPath, { threads: 1, ...load });
  const app = await buildServer(llm, server);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const baseURL = `http://127.0.0.1:${port}`;
  const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: server.apiKey ?? 'unused', maxRetries: 0, timeout: 60_000 });
  return {
    llm,
    model: app.stepwise.context.modelName,
    app,
    baseURL,
    client,
    async close() {
      await app.close();
      await llm.close();
    },
  };
}

/** Body fields the official client's types do not list but passes through (vLLM extensions). */
export type ExtraParams = { ignore_eos?: boolean; top_k?: number; return_token_ids?: boolean; min_tokens?: number };
export const extra = <T extends object>(params: T, more: ExtraParams): T => ({ ...params, ...more });

/** Polls `cond` every few ms until true, failing after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Makes every engine step of `llm` last `ms` longer (the sleep follows the runner's real work), so a
 * test can act while a request is in flight: on a fast CPU the tiny model decodes 30 tokens in ~3 ms,
 * faster than a 5 ms poll or a client's abort can see. Returns a function that undoes it.
 */
export function slowSteps(llm: LLM, ms: number): () => void {
  // The engine keeps its runner private; a test may reach it.
  const runner = (llm.engine as unknown as { runner: ModelRunner }).runner;
  const execute = runner.execute;
  runner.execute = async (step) => {
    const out = await execute.call(runner, step);
    await new Promise((r) => setTimeout(r, ms));
    return out;
  };
  return () => {
    runner.execute = execute;
  };
}
