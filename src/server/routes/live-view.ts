// GET / serves the live view page; GET /v1/stepwise/steps feeds it: the engine's step records after
// a given step number (compacted to what the drawing needs), the recent requests' arrival and
// finish steps, and the current queue / running / KV figures.
import type { FastifyInstance } from 'fastify';
import type { StepRecord } from '../../engine/step-trace.js';
import { LIVE_VIEW_HTML } from '../live-view-page.js';
import { engineGaugeValues } from '../engine-stats.js';
import type { ServeContext } from '../respond.js';

/** One step as the page draws it. */
export interface LiveStep {
  step: number;
  /** When the step ended, in ms on the engine's clock (only differences matter). */
  t: number;
  ms: number;
  tokens: number;
  /** Tokens sampled in this step (one per sequence that produced a token, plus accepted proposals). */
  generated: number;
  /** Speculative decoding: tokens proposed and verified in this step, and those accepted. */
  proposed: number;
  accepted: number;
  running: number;
  waiting: number;
  kvUsage: number;
  preempted: number;
  rows: Array<{ id: string; phase: 'prefill' | 'decode'; n: number }>;
}

/** At most this many steps per poll, so a page that fell behind catches up in bounded replies. */
const MAX_STEPS_PER_REPLY = 400;

export function liveStep(r: StepRecord, seqsPerRequest: (requestId: string) => number): LiveStep {
  return {
    step: r.step,
    t: r.startMs + r.totalMs,
    ms: r.totalMs,
    tokens: r.numBatchedTokens,
    generated: r.seqs.reduce((s, q) => s + (q.sampled ? 1 : 0), 0) + (r.numAcceptedTokens ?? 0),
    proposed: r.numDraftTokens ?? 0,
    accepted: r.numAcceptedTokens ?? 0,
    running: r.numRunning,
    waiting: r.numWaiting,
    kvUsage: r.kvBlocksTotal > 0 ? r.kvBlocksUsed / r.kvBlocksTotal : 0,
    preempted: r.numPreempted,
    rows: r.seqs.map((q) => ({
      id: seqsPerRequest(q.requestId) > 1 ? `${q.requestId}#${q.index}` : q.requestId,
      phase: q.prefillTokens > 0 ? 'prefill' : 'decode',
      n: q.prefillTokens + q.decodeTokens,
    })),
  };
}

export function registerLiveView(app: FastifyInstance, ctx: ServeContext): void {
  // Browsers ask for it; answering keeps their consoles free of 404s.
  app.get('/favicon.ico', async (_request, reply) => reply.code(204).send());
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(LIVE_VIEW_HTML));

  app.get<{ Querystring: { after?: string } }>('/v1/stepwise/steps', async (request) => {
    const after = Number(request.query.after ?? -1);
    const from = Number.isFinite(after) ? after : -1;
    const records = ctx.llm.engine.trace.records().filter((r) => r.step > from);
    const g = engineGaugeValues(ctx.llm.engine);
    return {
      model: ctx.modelName,
      backend: ctx.llm.backend,
      policy: ctx.llm.options.policy,
      stats: { running: g.running, waiting: g.waiting, kvUsage: g.kvUsage, activeHttpRequests: ctx.active.size },
      steps: records.slice(-MAX_STEPS_PER_REPLY).map((r) => liveStep(r, (id) => ctx.live.seqCount(id))),
      requests: ctx.live.list(),
    };
  });
}
