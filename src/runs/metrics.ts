// Client-side request metrics, defined exactly as vLLM's serving benchmark (benchmark_serving.py)
// defines them, so our numbers can sit beside vLLM's and llama.cpp's:
//   TTFT  time to first token: first output chunk - request sent
//   TPOT  time per output token, first token excluded: (e2e - TTFT) / (output_len - 1), only for
//         requests with more than one output token
//   ITL   inter-token latency: the gaps between successive output chunks, all requests pooled
//   E2E   end-to-end latency: last output chunk - request sent
//   throughput: completed requests, output tokens and prompt+output tokens per second of the whole
//   benchmark (first request sent -> last request done).

/** What one request did, timed by the client. All times in ms since the start of the run. */
export interface RequestRecord {
  index: number;
  promptLen: number;
  /** Output tokens received. */
  outputLen: number;
  sentMs: number;
  /** Arrival time of each output chunk (usually one token each), in order. */
  chunkMs: number[];
  /** When the last chunk (or the error) arrived. */
  endMs: number;
  success: boolean;
  error?: string;
  /** Engine-side request id, to match the request with the step trace. */
  requestId?: string;
}

export interface Distribution {
  count: number;
  mean: number;
  std: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

export interface RunMetrics {
  completed: number;
  failed: number;
  durationS: number;
  totalInputTokens: number;
  totalOutputTokens: number;
  requestThroughput: number;
  outputThroughput: number;
  totalTokenThroughput: number;
  ttftMs: Distribution;
  tpotMs: Distribution;
  itlMs: Distribution;
  e2eMs: Distribution;
}

/**
 * Percentile with linear interpolation between closest ranks (numpy's default, which vLLM uses):
 * rank = p/100 * (n - 1). `sorted` must be ascending. Empty input gives 0.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Summary of a sample (population standard deviation, as numpy's np.std). */
export function summarize(values: readonly number[]): Distribution {
  const n = values.length;
  if (n === 0) return { count: 0, mean: 0, std: 0, p50: 0, p90: 0, p99: 0, min: 0, max: 0 };
  // A typed array sorts numerically without a comparator call per comparison: a simulated run's
  // inter-token latencies are millions of values, and the comparator sort took over a second.
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const mean = sum / n;
  let sq = 0;
  for (const v of sorted) sq += (v - mean) ** 2;
  return {
    count: n,
    mean,
    std: Math.sqrt(sq / n),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    min: sorted[0],
    max: sorted[n - 1],
  };
}

/** The per-request latencies of one record (undefined where the definition does not apply). */
export function requestLatencies(r: RequestRecord): { ttftMs?: number; tpotMs?: number; e2eMs: number; itlMs: number[] } {
  const e2eMs = (r.chunkMs.length > 0 ? r.chunkMs[r.chunkMs.length - 1] : r.endMs) - r.sentMs;
  if (r.chunkMs.length === 0) return { e2eMs, itlMs: [] };
  const ttftMs = r.chunkMs[0] - r.sentMs;
  const itlMs: number[] = [];
  for (let i = 1; i < r.chunkMs.length; i++) itlMs.push(r.chunkMs[i] - r.chunkMs[i - 1]);
  const tpotMs = r.outputLen > 1 ? (e2eMs - ttftMs) / (r.outputLen - 1) : undefined;
  return { ttftMs, tpotMs, e2eMs, itlMs };
}

/**
 * Aggregates a run. `durationMs` is the benchmark's wall time; when omitted it is taken from the
 * records (first send to last end).
 */
export function computeMetrics(records: readonly RequestRecord[], durationMs?: number): RunMetrics {
  const ok = records.filter((r) => r.success);
  const ttft: number[] = [];
  const tpot: number[] = [];
  const itl: number[] = [];
  const e2e: number[] = [];
  let totalInputTokens = 0;
  let totalOutputTokens = 0;
  for (const r of ok) {
    const l = requestLatencies(r);
    totalInputTokens += r.promptLen;
    totalOutputTokens += r.outputLen;
    if (l.ttftMs !== undefined) ttft.push(l.ttftMs);
    if (l.tpotMs !== undefined) tpot.push(l.tpotMs);
    itl.push(...l.itlMs);
    e2e.push(l.e2eMs);
  }
  const span =
    durationMs ??
    (records.length === 0 ? 0 : Math.max(...records.map((r) => r.endMs)) - Math.min(...records.map((r) => r.sentMs)));
  const s = span / 1000;
  const rate = (x: number) => (s > 0 ? x / s : 0);
  return {
    completed: ok.length,
    failed: records.length - ok.length,
    durationS: s,
    totalInputTokens,
    totalOutputTokens,
    requestThroughput: rate(ok.length),
    outputThroughput: rate(totalOutputTokens),
    totalTokenThroughput: rate(totalInputTokens + totalOutputTokens),
    ttftMs: summarize(ttft),
    tpotMs: summarize(tpot),
    itlMs: summarize(itl),
    e2eMs: summarize(e2e),
  };
}
