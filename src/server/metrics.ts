// Prometheus metrics under vLLM's names, so dashboards, autoscalers and the Kubernetes Gateway API
// Inference Extension (which reads vllm:num_requests_waiting and vllm:kv_cache_usage_perc to pick a
// replica) work unchanged. Like vLLM, every series carries a model_name label.
//
// Gauges and the engine-side counters (preemptions, prefix cache) are read from the engine when
// /metrics is scraped; per-request counters and latency histograms are recorded as outputs stream.
// Counter names include the `_total` suffix that vLLM's Python client appends on exposition.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FinishReason, RequestOutput } from '../engine/types.js';

/** The engine's state as /metrics needs it. */
export interface EngineGaugeValues {
  running: number;
  waiting: number;
  /** Fraction of KV blocks in use, 0..1. */
  kvUsage: number;
  /** Cumulative since start. */
  preemptions: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  /** Speculative decoding, cumulative: sequences that verified proposals, proposed tokens, accepted ones, accepted by position. */
  specDrafts: number;
  specDraftTokens: number;
  specAcceptedTokens: number;
  specAcceptedPerPos: number[];
}

// Bucket edges as vLLM uses them, with a few finer ones at the low end since small models on CPU
// answer in milliseconds.
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_BUCKETS = [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

/** The KV cache's configuration, as vLLM's cache_config_info labels give it. */
export interface CacheConfigInfo {
  blockSize: number;
  numBlocks: number;
  cacheDtype: string;
  enablePrefixCaching: boolean;
}

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string };
  private readonly promptTokens: Counter<'model_name'>;
  private readonly generationTokens: Counter<'model_name'>;
  private readonly requestSuccess: Counter<'model_name' | 'finished_reason'>;
  private readonly ttft: Histogram<'model_name'>;
  private readonly itl: Histogram<'model_name'>;
  private readonly e2e: Histogram<'model_name'>;
  private readonly queueTime: Histogram<'model_name'>;

  constructor(modelName: string, engineValues: () => EngineGaugeValues, cache?: CacheConfigInfo) {
    this.labels = { model_name: modelName };
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    const labels = this.labels;

    // Gauges sample the engine on scrape.
    const gauge = (name: string, help: string, pick: (v: EngineGaugeValues) => number) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.set(labels, pick(engineValues()));
        },
      });
    gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', (v) => v.running);
    gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', (v) => v.waiting);
    gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', (v) => v.kvUsage);

    // The KV cache's shape, for the Gateway API Inference Extension's prefix-cache scorer (its
    // model-server protocol reads block_size and num_gpu_blocks from these labels). Value 1, as vLLM.
    if (cache) {
      new Gauge({
        name: 'vllm:cache_config_info',
        help: 'Information of the LLMEngine CacheConfig',
        labelNames: ['block_size', 'num_gpu_blocks', 'cache_dtype', 'enable_prefix_caching'],
        registers,
      }).set(
        {
          block_size: String(cache.blockSize),
          num_gpu_blocks: String(cache.numBlocks),
          cache_dtype: cache.cacheDtype,
          enable_prefix_caching: String(cache.enablePrefixCaching),
        },
        1,
      );
    }

    // Engine-side cumulative counts become counters by adding the increase since the last scrape.
    const engineCounter = (name: string, help: string, pick: (v: EngineGaugeValues) => number) => {
      let seen = 0;
      const counter = new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          const now = pick(engineValues());
          if (now > seen) this.inc(labels, now - seen);
          seen = Math.max(seen, now);
        },
      });
      counter.inc(labels, 0);
      return counter;
    };
    engineCounter('vllm:num_preemptions_total', 'Cumulative number of preemptions from the engine.', (v) => v.preemptions);
    engineCounter('vllm:prefix_cache_queries_total', 'Prefix cache queries, in number of queried tokens.', (v) => v.prefixCacheQueries);
    engineCounter('vllm:prefix_cache_hits_total', 'Prefix cache hits, in number of cached tokens.', (v) => v.prefixCacheHits);
    engineCounter('vllm:spec_decode_num_drafts_total', 'Number of spec decoding drafts.', (v) => v.specDrafts);
    engineCounter('vllm:spec_decode_num_draft_tokens_total', 'Number of draft tokens.', (v) => v.specDraftTokens);
    engineCounter('vllm:spec_decode_num_accepted_tokens_total', 'Number of accepted tokens.', (v) => v.specAcceptedTokens);
    // Accepted tokens by position in the draft, as vLLM labels them.
    const perPosSeen: number[] = [];
    new Counter({
      name: 'vllm:spec_decode_num_accepted_tokens_per_pos_total',
      help: 'Accepted tokens per draft position.',
      labelNames: ['model_name', 'position'],
      registers,
      collect() {
        engineValues().specAcceptedPerPos.forEach((n, pos) => {
          const seen = perPosSeen[pos] ?? 0;
          if (n > seen) this.inc({ ...labels, position: String(pos) }, n - seen);
          perPosSeen[pos] = Math.max(seen, n);
        });
      },
    });

    this.promptTokens = new Counter({ name: 'vllm:prompt_tokens_total', help: 'Number of prefill tokens processed.', labelNames, registers });
    this.generationTokens = new Counter({ name: 'vllm:generation_tokens_total', help: 'Number of generation tokens processed.', labelNames, registers });
    this.requestSuccess = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['model_name', 'finished_reason'],
      registers,
    });
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames, registers, buckets });
    this.ttft = histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS);
    this.e2e = histogram('vllm:e2e_request_latency_seconds', 'Histogram of end to end request latency in seconds.', REQUEST_BUCKETS);
    this.queueTime = histogram('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', REQUEST_BUCKETS);
    // Every series exists from the start (at zero), so a scrape before the first request sees them.
    for (const reason of ['stop', 'length', 'abort']) this.requestSuccess.inc({ ...labels, finished_reason: reason }, 0);
    for (const h of [this.ttft, this.itl, this.e2e, this.queueTime]) h.zero(labels);
    this.promptTokens.inc(labels, 0);
    this.generationTokens.inc(labels, 0);
  }

  /** Starts timing one engine request (one prompt, all of its n completions). */
  track(): RequestTracker {
    return new RequestTracker(this, performance.now());
  }

  /** @internal used by RequestTracker */
  record(kind: 'ttft' | 'itl' | 'e2e' | 'queue', seconds: number): void {
    this[kind === 'ttft' ? 'ttft' : kind === 'itl' ? 'itl' : kind === 'e2e' ? 'e2e' : 'queueTime'].observe(this.labels, seconds);
  }

  /** @internal */
  countTokens(prompt: number, generated: number): void {
    if (prompt > 0) this.promptTokens.inc(this.labels, prompt);
    if (generated > 0) this.generationTokens.inc(this.labels, generated);
  }

  /** @internal */
  countFinished(reason: FinishReason): void {
    this.requestSuccess.inc({ ...this.labels, finished_reason: reason });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Latency bookkeeping for one engine request, fed with each output as it streams. */
export class RequestTracker {
  private firstTokenAt: number | undefined;
  private lastTokenAt = new Map<number, number>();
  private done = false;

  constructor(
    private readonly metrics: ServerMetrics,
    private readonly arrivedAt: number,
  ) {}

  /** `queueMs`: time the request waited before its first step, when the engine reports it. */
  onOutput(out: RequestOutput, queueMs?: number): void {
    const now = performance.now();
    if (out.newTokenIds.length > 0) {
      if (this.firstTokenAt === undefined) {
        this.firstTokenAt = now;
        this.metrics.record('ttft', (now - this.arrivedAt) / 1000);
        this.metrics.countTokens(out.numPromptTokens, 0);
        if (queueMs !== undefined) this.metrics.record('queue', queueMs / 1000);
      }
      const prev = this.lastTokenAt.get(out.index);
      // One inter-token gap per token, as vLLM records it.
      if (prev !== undefined) for (let i = 0; i < out.newTokenIds.length; i++) this.metrics.record('itl', (now - prev) / 1000 / out.newTokenIds.length);
      this.lastTokenAt.set(out.index, now);
      this.metrics.countTokens(0, out.newTokenIds.length);
    }
    if (out.finished) this.metrics.countFinished(out.finishReason ?? 'stop');
  }

  /** Called once when every completion of the request has finished (or it was aborted). */
  onDone(): void {
    if (this.done) return;
    this.done = true;
    this.metrics.record('e2e', (performance.now() - this.arrivedAt) / 1000);
  }
}
