// The library entry point: load a model, then stream or batch-generate through the continuous-batching
// engine. Everything here is glue: the engine schedules, the runner computes, the tokenizer translates.
import { basename } from 'node:path';
import { availableParallelism } from 'node:os';
import { Engine, type EngineOptions, type RequestStream } from './engine/engine.js';
import { resolveEngineOptions } from './engine/engine-options.js';
import { EngineClosedError } from './engine/request-errors.js';
import { resolveSamplingParams } from './engine/sampling-params.js';
import type { FinishReason, ModelRunner, RequestOutput, SamplingParams, TokenLogprob } from './engine/types.js';
import { WorkerModelRunner } from './engine/worker-runner.js';
import { LocalModelRunner } from './engine/model-runner.js';
import { loadModel, type LoadedModel } from './model/loaders/index.js';
import type { GgufValue } from './model/loaders/gguf.js';
import { readModelHeader } from './model/loaders/header.js';
import { getKernels, type KernelBackend } from './model/kernels/index.js';
import type { ModelConfig } from './model/config.js';
import { DEFAULT_KV_CACHE_DTYPE, isKvCacheDtype, KV_CACHE_DTYPES, kvDtypeProblem, kvElementBytes, type KvCacheDtype } from './model/kernels/kv-dtype.js';
import { kvBytesPerToken } from './util/kv-bytes.js';
import { tokenizerFromGguf, tokenizerFromLlama2cFile } from './model/tokenizer.js';
import type { Tokenizer } from './model/tokenizer-types.js';
import { grammarVocabOf } from './engine/structured/grammar-vocab.js';
import { checkSpeculativeConfig, type SpeculativeConfig } from './engine/spec/speculative-config.js';
import { draftModelHeader } from './engine/spec/draft-vocabulary.js';
import type { StructuredOutputsParams } from './engine/structured/constraint.js';
import { ChatTemplate, chatTemplateSource, normalizeMessages, type ChatRenderOptions } from './server/chat-template.js';

export type Backend = KernelBackend;

export type LoadOptions = Partial<Omit<EngineOptions, 'tokenizer' | 'eogIds'>> & {
  /** llama2.c tokenizer.bin, for llama2.c checkpoints (GGUF files carry their own). */
  tokenizer?: string;
  backend?: Backend;
  threads?: number;
  /** Run the model on the main thread instead of a worker thread (simpler to debug, blocks the event loop). */
  inProcess?: boolean;
  /** KV cache size in bytes, instead of numBlocks. */
  kvCacheMemory?: number;
  /** KV cache element type: f16 (default, as llama.cpp), f32 or q8_0. */
  kvCacheDtype?: KvCacheDtype;
  /**
   * Speculative decoding: how tokens are proposed — prompt lookup (`{ method: 'ngram' }`) or a draft
   * model (`{ method: 'draft', model: FILE }`, or `dtype: 'q4_0'` for the target's own Q4_0 copy) —
   * and how many per step at most (numTokens).
   */
  speculative?: SpeculativeConfig;
};

export type ResolvedLoadOptions = Omit<EngineOptions, 'tokenizer' | 'eogIds'> & {
  backend: Backend;
  kvCacheDtype: KvCacheDtype;
  threads: number;
  inProcess: boolean;
  tokenizerPath?: string;
};

export type Prompt = string | number[];

export type GenerateParams = Partial<SamplingParams> & {
  priority?: number;
  requestId?: string;
  signal?: AbortSignal;
};

export interface CompletionResult {
  index: number;
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  stopReason?: string | number;
  logprobs?: Array<{ tokenId: number; logprob: number; top: TokenLogprob[] }>;
  numPreemptions: number;
}

export interface GenerateResult extends CompletionResult {
  requestId: string;
  numPromptTokens: number;
  numCachedTokens: number;
  /** All n completions (the first one is also spread into this object). */
  completions: CompletionResult[];
}

/**
 * Default KV budget when neither numBlocks nor kvCacheMemory is given: a full context for every slot,
 * capped at 4 GiB (pages are only touched as blocks are used, so an unused budget costs little).
 */
const DEFAULT_KV_CAP_BYTES = 4 * 1024 ** 3;

export class LLM {
  private closed = false;
  private chatTemplate: ChatTemplate | undefined;

  private constructor(
    readonly engine: Engine,
    readonly tokenizer: Tokenizer | null,
    readonly config: ModelConfig,
    readonly metadata: Record<string, GgufValue>,
    readonly modelName: string,
    readonly backend: string,
    readonly options: ResolvedLoadOptions,
  ) {}

  static async load(path: string, options: LoadOptions = {}): Promise<LLM> {
    const header = await readModelHeader(path);
    const config = header.config;
    const tokenizer = options.tokenizer
      ? tokenizerFromLlama2cFile(options.tokenizer)
      : header.format === 'gguf'
        ? tokenizerFromGguf(header.metadata)
        : null;
    const eogIds = tokenizer ? [...tokenizer.eogIds] : header.format === 'llama2c' ? [2] : [];

    const kvCacheDtype = options.kvCacheDtype ?? DEFAULT_KV_CACHE_DTYPE;
    if (!isKvCacheDtype(kvCacheDtype)) throw new RangeError(`unknown KV cache dtype '${String(kvCacheDtype)}' (${KV_CACHE_DTYPES.join(', ')})`);
    const kvProblem = kvDtypeProblem(kvCacheDtype, config.headDim);
    if (kvProblem) throw new RangeError(kvProblem);
    const spec = options.speculative;
    const numSpeculativeTokens = spec ? checkSpeculativeConfig(spec) : undefined;
    // A draft model keeps its own KV cache under the same block ids: a token costs both models' bytes.
    const draft = spec ? await draftModelHeader(spec, header) : undefined;
    const draftKvProblem = draft && kvDtypeProblem(kvCacheDtype, draft.config.headDim);
    if (draftKvProblem) throw new RangeError(`draft model: ${draftKvProblem}`);
    const resolved: ResolvedLoadOptions = {
      ...resolveEngineOptions({ ...options, numSpeculativeTokens, ...(draft ? { numLookaheadSlots: numSpeculativeTokens } : {}) }, {
        contextLength: config.contextLength,
        kvBytesPerToken: kvBytesPerToken(config, kvElementBytes(kvCacheDtype)) + (draft ? kvBytesPerToken(draft.config, kvElementBytes(kvCacheDtype)) : 0),
        defaultKvBytes: DEFAULT_KV_CAP_BYTES,
      }),
      backend: options.backend ?? 'auto',
      kvCacheDtype,
      threads: options.threads ?? availableParallelism(),
      inProcess: options.inProcess ?? false,
      tokenizerPath: options.tokenizer,
    };

    let runner: ModelRunner;
    let backendName: string;
    if (resolved.inProcess) {
      const model: LoadedModel = await loadModel(path);
      const kernels = await getKernels(resolved.backend, { threads: resolved.threads });
      runner = await LocalModelRunner.create({ model, kernels, numBlocks: resolved.numBlocks, blockSize: resolved.blockSize, kvCacheDtype, eogIds, speculative: spec });
      backendName = kernels.name;
    } else {
      const w = await WorkerModelRunner.create({
        modelPath: path,
        backend: resolved.backend,
        threads: resolved.threads,
        numBlocks: resolved.numBlocks,
        blockSize: resolved.blockSize,
        kvCacheDtype,
        eogIds,
        ...(spec ? { speculative: spec } : {}),
      });
      runner = w;
      backendName = w.kernelsName;
    }
    const { tokenizerPath: _t, backend: _b, threads: _th, inProcess: _i, kvCacheDtype: _kd, ...engineOpts } = resolved;
    const grammarVocab = tokenizer ? grammarVocabOf(tokenizer, config.vocabSize) : undefined;
    const engine = new Engine(runner, { ...engineOpts, tokenizer, eogIds, ...(grammarVocab ? { grammarVocab } : {}) });
    return new LLM(engine, tokenizer, config, header.metadata, basename(path), backendName, resolved);
  }

  /** Token ids of a prompt: strings are tokenized (with BOS as the model asks); id arrays pass through. */
  encode(prompt: Prompt): number[] {
    if (typeof prompt !== 'string') {
      for (const id of prompt) {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
          throw new RangeError(`prompt token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
        }
      }
      return [...prompt];
    }
    if (!this.tokenizer) throw new Error('this model has no tokenizer: pass token ids, or give a tokenizer file');
    return this.tokenizer.encode(prompt);
  }

  /**
   * The prompt token ids for a chat, rendered with the model's own chat template exactly as
   * /v1/chat/completions renders it (messages as OpenAI's {role, content}; `tools` and template
   * variables such as Qwen3's `{ enable_thinking: false }` in opts). Pass the result to generate/stream.
   */
  chatPrompt(messages: unknown[], opts: ChatRenderOptions = {}): number[] {
    this.chatTemplate ??= new ChatTemplate(chatTemplateSource(this.metadata), this.tokenizer);
    return this.chatTemplate.encode(normalizeMessages(messages), opts);
  }

  /**
   * Compiles an output constraint ahead of use, so a bad schema, regex or grammar is reported here
   * (InvalidParamError) rather than through the stream of the first request that uses it.
   */
  compileStructuredOutputs(params: StructuredOutputsParams): Promise<void> {
    this.assertOpen();
    return this.engine.compileStructuredOutputs(params);
  }

  /** Streams one request's outputs as the engine produces them. */
  stream(prompt: Prompt, params: GenerateParams = {}): RequestStream {
    this.assertOpen();
    const { priority, requestId, signal, ...sampling } = params;
    const stream = this.engine.addRequest({
      requestId,
      promptTokenIds: this.encode(prompt),
      sampling: resolveSamplingParams(sampling),
      priority,
    });
    if (signal) {
      if (signal.aborted) this.engine.abort(stream.requestId);
      else signal.addEventListener('abort', () => this.engine.abort(stream.requestId), { once: true });
    }
    return stream;
  }

  /** Generates for many prompts at once (they are batched by the engine); one result per prompt, in order. */
  async generate(prompts: Prompt | Prompt[], params: GenerateParams = {}): Promise<GenerateResult[]> {
    const list: Prompt[] = isSinglePrompt(prompts) ? [prompts] : prompts;
    if (params.requestId !== undefined && list.length > 1) throw new Error('requestId can only be given for a single prompt');
    // Add every request before awaiting any, so they share steps from the start.
    const streams = list.map((p) => this.stream(p, params));
    return Promise.all(streams.map((s) => collect(s)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new EngineClosedError('LLM is closed');
  }
}

function isSinglePrompt(p: Prompt | Prompt[]): p is Prompt {
  return typeof p === 'string' || (Array.isArray(p) && p.every((x) => typeof x === 'number'));
}

async function collect(stream: RequestStream): Promise<GenerateResult> {
  const byIndex = new Map<number, CompletionResult>();
  let last: RequestOutput | undefined;
  for await (const out of stream) {
    last = out;
    let c = byIndex.get(out.index);
    if (!c) {
      c = { index: out.index, text: '', tokenIds: [], finishReason: 'length', numPreemptions: 0 };
      byIndex.set(out.index, c);
    }
    c.text += out.text;
    c.tokenIds.push(...out.newTokenIds);
    if (out.logprobs) (c.logprobs ??= []).push(...out.logprobs);
    c.numPreemptions = out.numPreemptions;
    if (out.finished) {
      c.finishReason = out.finishReason ?? 'stop';
      if (out.stopReason !== undefined) c.stopReason = out.stopReason;
    }
  }
  const completions = [...byIndex.values()].sort((a, b) => a.index - b.index);
  const first = completions[0] ?? { index: 0, text: '', tokenIds: [], finishReason: 'abort' as const, numPreemptions: 0 };
  return {
    ...first,
    requestId: stream.requestId,
    numPromptTokens: last?.numPromptTokens ?? 0,
    numCachedTokens: last?.numCachedTokens ?? 0,
    completions,
  };
}
