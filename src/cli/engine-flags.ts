// The engine's knobs as CLI flags, shared by `generate`, `bench`, `serve` and `simulate`, so every
// command spells them the same way and maps them onto the same library options.
import type { ParseArgsConfig } from 'node:util';
import type { LoadOptions } from '../llm.js';
import type { SpeculativeConfig, SpeculativeMethod } from '../engine/spec/speculative-config.js';
import type { RequantDtype } from '../model/quantize-weights.js';
import type { BatchingPolicy } from '../engine/step-trace.js';
import { UsageError } from './usage-error.js';

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export const ENGINE_FLAG_OPTIONS = {
  policy: { type: 'string' },
  'scheduling-policy': { type: 'string' },
  'max-num-seqs': { type: 'string' },
  'max-num-batched-tokens': { type: 'string' },
  'num-blocks': { type: 'string' },
  'kv-cache-memory': { type: 'string' },
  'kv-cache-dtype': { type: 'string' },
  'block-size': { type: 'string' },
  'no-prefix-caching': { type: 'boolean' },
  'long-prefill-token-threshold': { type: 'string' },
  'max-queue': { type: 'string' },
  'static-batch-size': { type: 'string' },
  'static-wait-ms': { type: 'string' },
  'static-drop-finished': { type: 'boolean' },
  'max-model-len': { type: 'string' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  tokenizer: { type: 'string' },
  'speculative-method': { type: 'string' },
  'num-speculative-tokens': { type: 'string' },
  'speculative-disable-batch-size': { type: 'string' },
  'prompt-lookup-min': { type: 'string' },
  'prompt-lookup-max': { type: 'string' },
  'draft-model': { type: 'string' },
  'draft-dtype': { type: 'string' },
} satisfies OptionSpecs;

/** Help text for the engine flags, appended to each command's usage. */
export const ENGINE_FLAGS_HELP = `Engine options:
  --policy continuous|static|none   batching policy (default continuous)
  --scheduling-policy fcfs|priority  order of admission (default fcfs)
  --max-num-seqs N                  sequences in one step at most (default 64)
  --max-num-batched-tokens N        tokens in one step at most (default 2048)
  --num-blocks N                    KV cache blocks (default: enough for max-num-seqs full contexts)
  --kv-cache-memory BYTES           KV cache size instead of --num-blocks (suffixes K, M, G allowed)
  --kv-cache-dtype f16|f32|q8_0     KV cache element type (default f16, as llama.cpp; q8_0 holds ~1.9x
                                    the tokens of f16 in the same memory, f32 half)
  --block-size N                    tokens per KV block (default 16)
  --no-prefix-caching               turn automatic prefix caching off
  --long-prefill-token-threshold N  most prompt tokens one request may prefill per step
  --max-queue N                     waiting requests at most; more are rejected (default unbounded)
  --static-batch-size N             batch size of the static policy (default max-num-seqs)
  --static-wait-ms MS               static policy: wait this long for a batch to fill (default 0)
  --static-drop-finished            static policy: drop finished rows instead of padding them
  --max-model-len N                 context length cap (default: the model's)
  --backend auto|native|typescript  compute kernels (default auto: native when built)
  --threads N                       kernel threads (default: number of cores)
  --tokenizer FILE                  llama2.c tokenizer.bin for llama2.c checkpoints
  --speculative-method ngram|draft  speculative decoding (default off): prompt-lookup proposals, or
                                    a draft model's (--draft-model and/or --draft-dtype)
  --num-speculative-tokens K        proposals verified per sequence and step at most (default 4)
  --speculative-disable-batch-size N  no speculation while more sequences than N run (default 8)
  --prompt-lookup-min N, --prompt-lookup-max N  ngram: suffix lengths looked up (default 1, 4)
  --draft-model FILE                draft: a smaller model with the same vocabulary that proposes
  --draft-dtype q4_0|q8_0           draft: its weights re-encoded at this type in memory; without
                                    --draft-model, the model's own copy drafts (self-speculation)`;

const ENUMS: Record<string, readonly string[]> = {
  policy: ['continuous', 'static', 'none'],
  'scheduling-policy': ['fcfs', 'priority'],
  backend: ['auto', 'native', 'typescript'],
  'kv-cache-dtype': ['f16', 'f32', 'q8_0'],
  'speculative-method': ['ngram', 'draft'],
  'draft-dtype': ['q4_0', 'q8_0'],
};

export function parseIntFlag(name: string, raw: string, min = 1): number {
  if (!/^-?\d+$/.test(raw.trim())) throw new UsageError(`--${name} must be an integer, got '${raw}'`);
  const n = Number(raw);
  if (n < min) throw new UsageError(`--${name} must be at least ${min}, got ${n}`);
  return n;
}

export function parsePositiveNumber(name: string, raw: string): number {
  const x = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(x) || x <= 0) throw new UsageError(`--${name} must be a positive number, got '${raw}'`);
  return x;
}

/** Parses "512M", "2G", "1048576" into bytes. */
export function parseBytes(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(raw.trim());
  if (!m) throw new UsageError(`--${name} must be a size in bytes such as 268435456, 256M or 1G, got '${raw}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.floor(Number(m[1]) * mult);
  if (bytes <= 0) throw new UsageError(`--${name} must be positive, got '${raw}'`);
  return bytes;
}

function enumFlag<T extends string>(name: string, raw: string): T {
  const allowed = ENUMS[name];
  if (!allowed.includes(raw)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${raw}'`);
  return raw as T;
}

/** Maps parsed engine flags onto LLM.load options. Unset flags stay unset (library defaults apply). */
export function engineOptionsFromFlags(v: Record<string, string | boolean | undefined | (string | boolean)[]>): LoadOptions {
  const o: LoadOptions = {};
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const int = (k: string, min = 1): number | undefined => (s(k) === undefined ? undefined : parseIntFlag(k, s(k)!, min));
  if (s('policy') !== undefined) o.policy = enumFlag<NonNullable<LoadOptions['policy']>>('policy', s('policy')!);
  if (s('scheduling-policy') !== undefined) o.schedulingPolicy = enumFlag<NonNullable<LoadOptions['schedulingPolicy']>>('scheduling-policy', s('scheduling-policy')!);
  o.maxNumSeqs = int('max-num-seqs');
  o.maxNumBatchedTokens = int('max-num-batched-tokens');
  o.numBlocks = int('num-blocks');
  if (s('kv-cache-memory') !== undefined) o.kvCacheMemory = parseBytes('kv-cache-memory', s('kv-cache-memory')!);
  if (o.numBlocks !== undefined && o.kvCacheMemory !== undefined) throw new UsageError('give either --num-blocks or --kv-cache-memory, not both');
  o.blockSize = int('block-size');
  if (v['no-prefix-caching'] === true) o.enablePrefixCaching = false;
  o.longPrefillTokenThreshold = int('long-prefill-token-threshold');
  o.maxQueue = int('max-queue', 0);
  o.staticBatchSize = int('static-batch-size');
  o.staticWaitMs = int('static-wait-ms', 0);
  if (v['static-drop-finished'] === true) o.staticDropFinished = true;
  o.maxModelLen = int('max-model-len');
  if (s('backend') !== undefined) o.backend = enumFlag<NonNullable<LoadOptions['backend']>>('backend', s('backend')!);
  if (s('kv-cache-dtype') !== undefined) o.kvCacheDtype = enumFlag<NonNullable<LoadOptions['kvCacheDtype']>>('kv-cache-dtype', s('kv-cache-dtype')!);
  o.threads = int('threads');
  if (s('tokenizer') !== undefined) o.tokenizer = s('tokenizer');
  o.speculative = speculativeFromFlags(s, int);
  o.speculativeDisableBatchSize = int('speculative-disable-batch-size');
  for (const k of Object.keys(o) as (keyof LoadOptions)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** --speculative-method and the flags of each method; a method's flag without it names what it needs. */
function speculativeFromFlags(s: (k: string) => string | undefined, int: (k: string, min?: number) => number | undefined): SpeculativeConfig | undefined {
  const given = (keys: string[]) => keys.filter((k) => s(k) !== undefined);
  const ngramFlags = given(['prompt-lookup-min', 'prompt-lookup-max']);
  const draftFlags = given(['draft-model', 'draft-dtype']);
  const raw = s('speculative-method');
  if (raw === undefined) {
    const stray = [...given(['num-speculative-tokens']), ...ngramFlags, ...draftFlags][0];
    if (stray) throw new UsageError(`--${stray} needs --speculative-method ${draftFlags.includes(stray) ? 'draft' : 'ngram'}`);
    return undefined;
  }
  const method = enumFlag<SpeculativeMethod>('speculative-method', raw);
  const numTokens = int('num-speculative-tokens') ?? 4;
  if (method === 'ngram') {
    if (draftFlags.length > 0) throw new UsageError(`--${draftFlags[0]} needs --speculative-method draft`);
    const min = int('prompt-lookup-min') ?? 1;
    const max = int('prompt-lookup-max') ?? Math.max(4, min);
    if (min > max) throw new UsageError(`--prompt-lookup-min (${min}) must not exceed --prompt-lookup-max (${max})`);
    return { method, numTokens, ngramMin: min, ngramMax: max };
  }
  if (ngramFlags.length > 0) throw new UsageError(`--${ngramFlags[0]} needs --speculative-method ngram`);
  if (draftFlags.length === 0) throw new UsageError('--speculative-method draft needs --draft-model FILE or --draft-dtype q4_0|q8_0 (the model\'s own copy)');
  const model = s('draft-model');
  const dtype = s('draft-dtype');
  return { method, numTokens, ...(model !== undefined ? { model } : {}), ...(dtype !== undefined ? { dtype: enumFlag<RequantDtype>('draft-dtype', dtype) } : {}) };
}

const POLICIES: readonly BatchingPolicy[] = ['none', 'static', 'continuous'];

/**
 * The policies a bench or simulation runs: --compare's list, or the one --policy (or the default)
 * names. With --compare, the policy leaves `load` (each run sets its own).
 */
export function policiesFromFlags(v: { compare?: string; policy?: string }, load: LoadOptions): BatchingPolicy[] {
  if (v.compare === undefined) return [load.policy ?? 'continuous'];
  if (v.policy !== undefined) throw new UsageError('give either --policy or --compare, not both');
  const policies = v.compare.split(',').map((s) => s.trim()).filter((s) => s !== '') as BatchingPolicy[];
  const bad = policies.find((p) => !POLICIES.includes(p));
  if (bad !== undefined || policies.length === 0) throw new UsageError(`--compare takes a comma-separated list of ${POLICIES.join(', ')}, got '${v.compare}'`);
  if (new Set(policies).size !== policies.length) throw new UsageError(`--compare lists a policy twice: '${v.compare}'`);
  delete load.policy;
  return policies;
}
