// Fixtures for the simulator tests: scheduler options, requests and a deterministic workload.
import type { SimRequest, SimSchedulerOptions } from '../../src/sim/simulator.js';
import { buildWorkload } from '../../src/runs/workload.js';

export function simOptions(over: Partial<SimSchedulerOptions> = {}): SimSchedulerOptions {
  return {
    policy: 'continuous',
    schedulingPolicy: 'fcfs',
    maxNumSeqs: 8,
    maxNumBatchedTokens: 64,
    numBlocks: 256,
    blockSize: 4,
    enablePrefixCaching: true,
    longPrefillTokenThreshold: 0,
    maxQueue: 0,
    staticBatchSize: 4,
    staticWaitMs: 0,
    staticDropFinished: false,
    maxModelLen: 512,
    ...over,
  };
}

/** A request with a distinct prompt of `promptLen` tokens. */
export function req(index: number, promptLen: number, outputLen: number, arrivalMs = 0): SimRequest {
  return { index, promptTokenIds: Array.from({ length: promptLen }, (_, j) => 10 + ((index * 131 + j * 17) % 900)), outputLen, arrivalMs };
}

/** A reproducible mixed workload: uneven prompts and outputs, Poisson arrivals. */
export function poissonWorkload(n: number, seed: number, qps: number): SimRequest[] {
  return buildWorkload(
    {
      kind: 'synthetic',
      seed,
      numRequests: n,
      promptDist: { kind: 'uniform', min: 3, max: 40 },
      outputDist: { kind: 'uniform', min: 1, max: 24 },
      arrival: { kind: 'poisson', qps },
    },
    { vocabSize: 1000, bosId: 1, maxModelLen: 512 },
  ).requests;
}
