// The simulated model runner's token side: it answers every row that samples with a made-up token,
// so the scheduler's update() sees exactly what a real runner would give it — one token per sampling
// sequence — without any arithmetic. How long the step took is the cost model's business, not this.
//
// Tokens are a cheap function of (the prompt's last token, output index), so two requests with the
// same prompt generate the same tokens, as greedy decoding would: prefix caching of generated blocks
// then behaves as in a real greedy run. Sequences end by length (the workload fixes output lengths).
import type { ModelRunner, ModelRunnerOutput, SampledToken, SchedulerOutput } from '../engine/types.js';

/** What the discrete-event loop needs from a runner: the step's tokens, at once. */
export interface SyncRunner {
  executeSync(out: SchedulerOutput): ModelRunnerOutput;
}

/** Thrown when the scheduler asks the simulated runner for something a real runner would refuse. */
export class SimulatedRunnerError extends Error {
  override name = 'SimulatedRunnerError';
}

interface SeqTokens {
  base: number;
  numOutput: number;
}

export class SimulatedTokenRunner implements SyncRunner, ModelRunner {
  private readonly seqs = new Map<number, SeqTokens>();

  executeSync(out: SchedulerOutput): ModelRunnerOutput {
    for (const id of out.finishedSeqIds) this.seqs.delete(id);
    for (const ns of out.newSequences) {
      const last = ns.promptTokenIds[ns.promptTokenIds.length - 1] ?? 0;
      this.seqs.set(ns.seqId, { base: Math.imul(last + 1, 0x9e3779b1) >>> 0, numOutput: ns.outputTokenIds.length });
    }
    const sampled: SampledToken[] = [];
    for (const s of out.scheduled) {
      if (!s.sample) continue;
      const st = this.seqs.get(s.seqId);
      if (!st) throw new SimulatedRunnerError(`step ${out.step}: sequence ${s.seqId} samples but was never announced`);
      sampled.push({ seqId: s.seqId, tokenId: ((st.base + Math.imul(st.numOutput, 0x85ebca6b)) >>> 16) + 3 });
      st.numOutput++;
    }
    return { sampled, forwardMs: 0, sampleMs: 0 };
  }

  async execute(out: SchedulerOutput): Promise<ModelRunnerOutput> {
    return this.executeSync(out);
  }

  async close(): Promise<void> {
    this.seqs.clear();
  }
}
