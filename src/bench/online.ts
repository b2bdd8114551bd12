// Online mode: the workload sent to any OpenAI-compatible server (Stepwise's own, llama.cpp's
// server, vLLM, ...) as streaming /v1/completions requests, timed on the client exactly as vLLM's
// benchmark_serving.py times them: a token arrives with each streamed chunk that carries text.
import { performance } from 'node:perf_hooks';
import type { RequestRecord } from '../runs/metrics.js';
import type { BenchRequest, Workload } from '../runs/workload.js';

/** A remote server that answered a benchmark request with something other than a completion stream. */
export class ServerResponseError extends Error {
  override name = 'ServerResponseError';
}

export interface OnlineRunOptions {
  /** Server base URL, e.g. http://127.0.0.1:8000 (with or without /v1). */
  url: string;
  /** Model name to send; default: the first model the server lists. */
  model?: string;
  apiKey?: string;
  /** Send the prompt text (when the workload has it) instead of token ids. */
  useText?: boolean;
  onRequestDone?: (r: RequestRecord) => void;
}

export interface OnlineRun {
  records: RequestRecord[];
  durationMs: number;
  model: string;
}

/** The server's /v1 root. */
export function apiBase(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ServerResponseError(`--url must be an http(s) URL such as http://127.0.0.1:8000, got '${url}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ServerResponseError(`--url must be http or https, got '${url}'`);
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.origin}${path.endsWith('/v1') ? path : `${path}/v1`}`;
}

function headers(apiKey?: string): Record<string, string> {
  return { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
}

/** The first model id of GET /v1/models. */
export async function firstModel(base: string, apiKey?: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${base}/models`, { headers: headers(apiKey) });
  } catch (err) {
    throw new ServerResponseError(`cannot reach ${base}/models: ${(err as Error).message}`);
  }
  if (!res.ok) throw new ServerResponseError(`${base}/models answered HTTP ${res.status}; pass --served-model-name`);
  const body = (await res.json()) as { data?: Array<{ id?: unknown }> };
  const id = body.data?.[0]?.id;
  if (typeof id !== 'string') throw new ServerResponseError(`${base}/models lists no model; pass --served-model-name`);
  return id;
}

/**
 * Reads a server-sent-events body, calling onData with each `data:` payload (without [DONE]).
 * Lines may be split across network chunks, so partial lines are carried over.
 */
export async function readSse(body: ReadableStream<Uint8Array>, onData: (data: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buf = '';
  const emitLine = (raw: string) => {
    const line = raw.replace(/\r$/, '');
    if (!line.startsWith('data:')) return;
    const data = line.slice(5).trim();
    if (data !== '[DONE]') onData(data);
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        emitLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (done) break;
    }
    if (buf.trim() !== '') emitLine(buf.trim());
  } catch (err) {
    // A bad event ends the request; release the connection instead of leaving it streaming.
    await reader.cancel().catch(() => undefined);
    throw err;
  }
}

/** One streaming completion, timed. `t0` is the run's start on performance.now(). */
export async function sendOne(base: string, model: string, req: BenchRequest, t0: number, opts: { apiKey?: string; useText?: boolean }): Promise<RequestRecord> {
  const rec: RequestRecord = { index: req.index, promptLen: req.promptTokenIds.length, outputLen: 0, sentMs: performance.now() - t0, chunkMs: [], endMs: 0, success: false };
  const body = {
    model,
    prompt: opts.useText && req.promptText !== undefined ? req.promptText : req.promptTokenIds,
    max_tokens: req.outputLen,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  };
  let chunks = 0;
  let usageTokens: number | undefined;
  try {
    const res = await fetch(`${base}/completions`, { method: 'POST', headers: headers(opts.apiKey), body: JSON.stringify(body) });
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => '');
      throw new ServerResponseError(`HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
    }
    await readSse(res.body, (data) => {
      let msg: { choices?: Array<{ text?: unknown }>; usage?: { completion_tokens?: unknown }; error?: { message?: unknown } };
      try {
        msg = JSON.parse(data);
      } catch {
        throw new ServerResponseError(`server sent a stream event that is not JSON: ${data.slice(0, 80)}`);
      }
      if (msg.error) throw new ServerResponseError(`server error in stream: ${String(msg.error.message ?? JSON.stringify(msg.error))}`);
      if (typeof msg.usage?.completion_tokens === 'number') usageTokens = msg.usage.completion_tokens;
      const text = msg.choices?.[0]?.text;
      if (typeof text === 'string' && text.length > 0) {
        rec.chunkMs.push(performance.now() - t0);
        chunks++;
      }
    });
    rec.outputLen = usageTokens ?? chunks;
    rec.success = rec.outputLen > 0;
    if (!rec.success) rec.error = 'the server streamed no output';
  } catch (err) {
    rec.error = (err as Error).message;
  }
  rec.endMs = performance.now() - t0;
  return rec;
}

export async function runOnline(workload: Workload, opts: OnlineRunOptions): Promise<OnlineRun> {
  const base = apiBase(opts.url);
  const model = opts.model ?? (await firstModel(base, opts.apiKey));
  const t0 = performance.now();
  const pending = workload.requests.map(
    (req) =>
      new Promise<RequestRecord>((resolve) => {
        const go = () =>
          void sendOne(base, model, req, t0, opts).then((r) => {
            opts.onRequestDone?.(r);
            resolve(r);
          });
        if (req.arrivalMs <= 0) go();
        else setTimeout(go, req.arrivalMs);
      }),
  );
  const records = await Promise.all(pending);
  return { records, durationMs: Math.max(0, ...records.map((r) => r.endMs)), model };
}
