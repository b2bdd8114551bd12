// Benchmark workloads: which requests arrive, when, with how many prompt tokens and how many output
// tokens each must generate. Everything is drawn from --seed, so the same flags give the same
// requests on every machine — the precondition for comparing policies, runs and peers.
import { SeededRng } from './rng.js';
import { describeDistribution, sampleLength, validateDistribution, type LengthDistribution } from './distributions.js';
import { readShareGptFile } from './sharegpt.js';
import { WorkloadError } from './errors.js';

/** When requests reach the engine. */
export type ArrivalSpec =
  /** All at once at t = 0 (vLLM's offline throughput benchmark). */
  | { kind: 'offline' }
  /** A Poisson process of `qps` requests per second (exponential gaps; the first at t = 0). */
  | { kind: 'poisson'; qps: number }
  /** `size` requests at once every `intervalMs`. */
  | { kind: 'burst'; size: number; intervalMs: number };

export type WorkloadKind = 'standard' | 'nano' | 'fixed' | 'synthetic' | 'sharegpt';

export interface WorkloadSpec {
  kind: WorkloadKind;
  seed: number;
  /** Overrides the preset's request count. */
  numRequests?: number;
  /** `fixed`: exact prompt and output lengths. */
  inputLen?: number;
  outputLen?: number;
  /** Override (or, for `synthetic`, give) the length distributions. */
  promptDist?: LengthDistribution;
  outputDist?: LengthDistribution;
  /** `sharegpt`: path of the conversation file. */
  dataset?: string;
  arrival: ArrivalSpec;
  /** Every prompt starts with one of a few fixed prefixes (shared system prompts); see SharedPrefixSpec. */
  sharedPrefix?: SharedPrefixSpec;
}

/**
 * Prompts that share prefixes, as many users of a few system prompts do: `groups` fixed random
 * prefixes of `length` tokens, and each request's prompt is one of them (drawn uniformly) followed
 * by the prompt the workload would have given it. What prefix caching, and prefix-aware routing
 * across replicas, can save.
 */
export interface SharedPrefixSpec {
  length: number;
  groups: number;
}

/** What a ShareGPT workload needs of the model's tokenizer (a Tokenizer fits). */
export interface PromptEncoder {
  encode(text: string, opts?: { addBos?: boolean }): number[];
}

/** What the model imposes on a workload. */
export interface WorkloadTarget {
  vocabSize: number;
  /** Prepended to synthetic prompts when the model has one. */
  bosId?: number;
  /** Prompt + output never exceed this (longer requests are clipped and counted). */
  maxModelLen?: number;
  /** Needed for ShareGPT (to measure and encode the text). */
  tokenizer?: PromptEncoder | null;
}

export interface BenchRequest {
  index: number;
  promptTokenIds: number[];
  /** Original text (ShareGPT), sent as-is to remote servers. */
  promptText?: string;
  /** Tokens the request must generate (max_tokens, with EOS ignored). */
  outputLen: number;
  /** Milliseconds after the start of the run at which the request is sent. */
  arrivalMs: number;
  /** Which shared prefix the prompt starts with (workloads with a SharedPrefixSpec). */
  prefixGroup?: number;
}

export interface Workload {
  name: string;
  /** One line: what the requests look like. */
  description: string;
  seed: number;
  arrival: ArrivalSpec;
  requests: BenchRequest[];
  /** Requests shortened to fit maxModelLen. */
  clipped: number;
  sharedPrefix?: SharedPrefixSpec;
}

interface Preset {
  numRequests: number;
  prompt: LengthDistribution;
  output: LengthDistribution;
  about: string;
}

export const PRESETS: Record<'standard' | 'nano', Preset> = {
  standard: {
    numRequests: 128,
    prompt: { kind: 'uniform', min: 32, max: 512 },
    output: { kind: 'lognormal', median: 128, sigma: 1.0, min: 16, max: 1024 },
    about: 'chat-like: uniform prompts, long-tailed outputs',
  },
  nano: {
    numRequests: 256,
    prompt: { kind: 'uniform', min: 100, max: 1024 },
    output: { kind: 'uniform', min: 100, max: 1024 },
    about: "nano-vllm's benchmark",
  },
};

// Independent random streams, so that e.g. changing the arrival process leaves the lengths alone.
const STREAM_LENGTHS = 0;
const STREAM_TOKENS = 1;
const STREAM_ARRIVALS = 2;
const STREAM_SHUFFLE = 3;
const STREAM_PREFIX_TOKENS = 4;
const STREAM_PREFIX_GROUPS = 5;

function streamRng(seed: number, stream: number): SeededRng {
  return new SeededRng(Math.imul(seed | 0, 0x2545f491) ^ Math.imul(stream + 1, 0x9e3779b1));
}

export function buildWorkload(spec: WorkloadSpec, target: WorkloadTarget): Workload {
  if (!Number.isInteger(spec.seed)) throw new WorkloadError(`seed must be an integer, got ${spec.seed}`);
  if (spec.numRequests !== undefined && (!Number.isInteger(spec.numRequests) || spec.numRequests < 1)) {
    throw new WorkloadError(`number of requests must be a positive integer, got ${spec.numRequests}`);
  }
  if (!Number.isInteger(target.vocabSize) || target.vocabSize < 2) throw new WorkloadError(`vocabulary size must be at least 2, got ${target.vocabSize}`);
  validateArrival(spec.arrival);
  const prefix = spec.sharedPrefix;
  if (prefix) validateSharedPrefix(prefix, spec, target);
  const prefixLen = prefix?.length ?? 0;

  let lengths: Array<{ prompt: number; output: number; text?: string; ids?: number[] }>;
  let description: string;
  if (spec.kind === 'sharegpt') {
    const r = shareGptLengths(spec, target);
    lengths = r.lengths;
    description = r.description;
  } else {
    const { count, prompt, output, about } = syntheticShape(spec);
    const rng = streamRng(spec.seed, STREAM_LENGTHS);
    lengths = [];
    for (let i = 0; i < count; i++) {
      const p = sampleLength(prompt, rng);
      lengths.push({ prompt: p, output: sampleLength(output, rng) });
    }
    description = `${count} requests, prompt ${describeDistribution(prompt)}, output ${describeDistribution(output)}${about ? ` (${about})` : ''}`;
  }

  let clipped = 0;
  const maxLen = target.maxModelLen;
  if (maxLen !== undefined) {
    if (maxLen < 2) throw new WorkloadError(`max model length ${maxLen} leaves no room for a prompt and an output token`);
    // A shared prefix is kept whole: the request's own part of the prompt is shortened instead.
    for (const l of lengths) {
      if (prefixLen + l.prompt + l.output <= maxLen) continue;
      clipped++;
      l.prompt = Math.min(l.prompt, maxLen - 1 - prefixLen);
      l.output = Math.min(l.output, maxLen - prefixLen - l.prompt);
      if (l.ids) l.ids = l.ids.slice(0, l.prompt);
    }
  }

  const tokRng = streamRng(spec.seed, STREAM_TOKENS);
  // Synthetic prompts are random ids above the usual control ids (0..2 for Llama vocabularies), so
  // they never contain an accidental BOS/EOS; a BOS leads the prompt as a tokenizer would put it.
  const lo = Math.min(3, target.vocabSize - 1);
  const requests: BenchRequest[] = lengths.map((l, index) => {
    let ids = l.ids;
    if (!ids) {
      ids = new Array<number>(l.prompt);
      for (let t = 0; t < l.prompt; t++) ids[t] = tokRng.int(lo, target.vocabSize - 1);
      if (target.bosId !== undefined && !prefix) ids[0] = target.bosId;
    }
    return { index, promptTokenIds: ids, ...(l.text !== undefined ? { promptText: l.text } : {}), outputLen: l.output, arrivalMs: 0 };
  });
  if (prefix) {
    prependSharedPrefixes(requests, prefix, target, streamRng(spec.seed, STREAM_PREFIX_TOKENS), streamRng(spec.seed, STREAM_PREFIX_GROUPS));
    description += `, each prompt led by one of ${prefix.groups} shared ${prefix.length}-token prefixes`;
  }
  assignArrivals(requests, spec.arrival, streamRng(spec.seed, STREAM_ARRIVALS));

  return { name: spec.kind, description: description + `, ${describeArrival(spec.arrival)}`, seed: spec.seed, arrival: spec.arrival, requests, clipped, ...(prefix ? { sharedPrefix: { ...prefix } } : {}) };
}

function validateSharedPrefix(p: SharedPrefixSpec, spec: WorkloadSpec, target: WorkloadTarget): void {
  if (!Number.isInteger(p.length) || p.length < 1) throw new WorkloadError(`shared prefix length must be a positive integer, got ${p.length}`);
  if (!Number.isInteger(p.groups) || p.groups < 1) throw new WorkloadError(`number of prefix groups must be a positive integer, got ${p.groups}`);
  // ShareGPT prompts are text sent as is: a prefix of token ids would not be in it.
  if (spec.kind === 'sharegpt') throw new WorkloadError('shared prefixes apply to synthetic workloads, not sharegpt');
  if (target.maxModelLen !== undefined && p.length >= target.maxModelLen) {
    throw new WorkloadError(`a shared prefix of ${p.length} tokens leaves no room for an output token within the max model length ${target.maxModelLen}`);
  }
}

/** Puts one of the prefixes, drawn uniformly, in front of each prompt; the prefix carries the BOS. */
function prependSharedPrefixes(requests: BenchRequest[], p: SharedPrefixSpec, target: WorkloadTarget, tokRng: SeededRng, groupRng: SeededRng): void {
  const lo = Math.min(3, target.vocabSize - 1);
  const prefixes: number[][] = [];
  for (let g = 0; g < p.groups; g++) {
    const ids = new Array<number>(p.length);
    for (let t = 0; t < p.length; t++) ids[t] = tokRng.int(lo, target.vocabSize - 1);
    if (target.bosId !== undefined) ids[0] = target.bosId;
    prefixes.push(ids);
  }
  for (const r of requests) {
    const g = groupRng.int(0, p.groups - 1);
    r.promptTokenIds = prefixes[g].concat(r.promptTokenIds);
    r.prefixGroup = g;
  }
}

function syntheticShape(spec: WorkloadSpec): { count: number; prompt: LengthDistribution; output: LengthDistribution; about?: string } {
  if (spec.kind === 'fixed') {
    if (spec.inputLen === undefined || spec.outputLen === undefined) throw new WorkloadError('the fixed workload needs --input-len and --output-len');
    const prompt: LengthDistribution = { kind: 'fixed', value: spec.inputLen };
    const output: LengthDistribution = { kind: 'fixed', value: spec.outputLen };
    validateDistribution(prompt, '--input-len');
    validateDistribution(output, '--output-len');
    return { count: spec.numRequests ?? 1, prompt, output };
  }
  if (spec.kind === 'synthetic') {
    if (!spec.promptDist || !spec.outputDist) throw new WorkloadError('the synthetic workload needs --prompt-dist and --output-dist');
    return { count: spec.numRequests ?? 100, prompt: spec.promptDist, output: spec.outputDist };
  }
  if (spec.kind !== 'standard' && spec.kind !== 'nano') throw new WorkloadError(`unknown workload '${spec.kind}'`);
  const preset = PRESETS[spec.kind];
  return {
    count: spec.numRequests ?? preset.numRequests,
    prompt: spec.promptDist ?? preset.prompt,
    output: spec.outputDist ?? preset.output,
    about: spec.promptDist || spec.outputDist ? undefined : preset.about,
  };
}

function shareGptLengths(spec: WorkloadSpec, target: WorkloadTarget) {
  if (!spec.dataset) throw new WorkloadError('the sharegpt workload needs --dataset FILE (ShareGPT JSON)');
  const tok = target.tokenizer;
  if (!tok) throw new WorkloadError('the sharegpt workload needs a tokenizer to measure the conversations (a GGUF model with one, or --tokenizer)');
  const file = readShareGptFile(spec.dataset);
  // Shuffle with the seed, then keep conversations in order until we have enough: vLLM's sampling.
  const order = file.pairs.map((_, i) => i);
  const rng = streamRng(spec.seed, STREAM_SHUFFLE);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const want = spec.numRequests ?? 1000;
  const lengths: Array<{ prompt: number; output: number; text: string; ids: number[] }> = [];
  let tooShort = 0;
  for (const i of order) {
    if (lengths.length >= want) break;
    const pair = file.pairs[i];
    const ids = tok.encode(pair.prompt);
    const output = tok.encode(pair.completion, { addBos: false }).length;
    // vLLM drops pairs with fewer than 4 prompt or output tokens: too short to say anything about latency.
    if (ids.length < 4 || output < 4) {
      tooShort++;
      continue;
    }
    lengths.push({ prompt: ids.length, output, text: pair.prompt, ids });
  }
  if (lengths.length === 0) throw new WorkloadError(`${spec.dataset}: no conversation has at least 4 prompt and 4 output tokens`);
  const extra = [file.skipped ? `${file.skipped} without a reply skipped` : '', tooShort ? `${tooShort} too short skipped` : ''].filter(Boolean).join(', ');
  return { lengths, description: `${lengths.length} ShareGPT conversations from ${spec.dataset}${extra ? ` (${extra})` : ''}` };
}

function validateArrival(a: ArrivalSpec): void {
  if (a.kind === 'poisson' && !(Number.isFinite(a.qps) && a.qps > 0)) throw new WorkloadError(`--qps must be a positive number, got ${a.qps}`);
  if (a.kind === 'burst') {
    if (!Number.isInteger(a.size) || a.size < 1) throw new WorkloadError(`--burst-size must be a positive integer, got ${a.size}`);
    if (!(Number.isFinite(a.intervalMs) && a.intervalMs >= 0)) throw new WorkloadError(`--burst-interval-ms must be a non-negative number, got ${a.intervalMs}`);
  }
}

function assignArrivals(requests: BenchRequest[], a: ArrivalSpec, rng: SeededRng): void {
  let t = 0;
  requests.forEach((r, i) => {
    if (a.kind === 'offline') r.arrivalMs = 0;
    else if (a.kind === 'burst') r.arrivalMs = Math.floor(i / a.size) * a.intervalMs;
    else {
      if (i > 0) t += rng.exponential(a.qps) * 1000;
      r.arrivalMs = t;
    }
  });
}

export function describeArrival(a: ArrivalSpec): string {
  if (a.kind === 'offline') return 'all arriving at once';
  if (a.kind === 'poisson') return `Poisson arrivals at ${a.qps} req/s`;
  return `bursts of ${a.size} every ${a.intervalMs} ms`;
}

/** Totals of a workload, for reports. */
export function workloadTotals(w: Workload): { promptTokens: number; outputTokens: number } {
  let promptTokens = 0;
  let outputTokens = 0;
  for (const r of w.requests) {
    promptTokens += r.promptTokenIds.length;
    outputTokens += r.outputLen;
  }
  return { promptTokens, outputTokens };
}

/** What reports say about a workload: its name, seed, size and token totals. */
export interface WorkloadSummary {
  name: string;
  description: string;
  seed: number;
  numRequests: number;
  promptTokens: number;
  outputTokens: number;
  clipped: number;
  sharedPrefix?: SharedPrefixSpec;
}

export function workloadSummary(w: Workload): WorkloadSummary {
  const totals = workloadTotals(w);
  return {
    name: w.name,
    description: w.description,
    seed: w.seed,
    numRequests: w.requests.length,
    promptTokens: totals.promptTokens,
    outputTokens: totals.outputTokens,
    clipped: w.clipped,
    ...(w.sharedPrefix ? { sharedPrefix: w.sharedPrefix } : {}),
  };
}
