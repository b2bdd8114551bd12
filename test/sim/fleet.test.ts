// The fleet simulation: N replicas of the engine under one workload and one clock. Each replica must
// decide exactly as a lone engine given the same requests (the loop only interleaves them), and the
// routers must place requests as they say: in turn, to an idle replica, with their cached prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SchedulerOutput } from '../../src/engine/types.js';
import { buildWorkload } from '../../src/runs/workload.js';
import { fleetFigures } from '../../src/sim/fleet-figures.js';
import { createRouter, type RouterName } from '../../src/sim/routers/index.js';
import { simulate, simulateFleet, SimulationError, type SimRequest, type SimSchedulerOptions } from '../../src/sim/simulator.js';
import { poissonWorkload, req, simOptions } from './helpers.js';

const stepTime = (out: SchedulerOutput) => 0.8 + 0.05 * out.numBatchedTokens + 0.02 * out.scheduled.length;

const cases: Array<[string, SimSchedulerOptions, number]> = [
  ['continuous, preempting', simOptions({ numBlocks: 28, maxNumSeqs: 6, maxNumBatchedTokens: 48 }), 1500],
  ['static with a wait', simOptions({ policy: 'static', staticBatchSize: 4, staticWaitMs: 10 }), 400],
];

for (const [name, sched, qps] of cases) {
  for (const router of ['round-robin', 'least-queue', 'prefix-affinity'] as RouterName[]) {
    test(`each replica of a fleet decides exactly as a lone engine given its requests: ${name}, ${router}`, () => {
      const requests = poissonWorkload(90, 7, qps);
      const fleet = simulateFleet({ requests, scheduler: sched, replicas: 3, router: createRouter(router), stepTimeMs: stepTime, keepSchedulerOutputs: true });
      assert.equal(fleet.records.length, 90);
      assert.ok(fleet.records.every((r) => r.success));
      let preempted = 0;
      for (const rep of fleet.replicas) {
        const mine = requests.filter((r) => fleet.assignment[r.index] === rep.index);
        assert.ok(mine.length > 10, `replica ${rep.index} got ${mine.length} requests`);
        const alone = simulate({ requests: mine, scheduler: sched, stepTimeMs: stepTime, keepSchedulerOutputs: true });
        assert.deepEqual(rep.schedulerOutputs, alone.schedulerOutputs);
        assert.deepEqual(rep.steps, alone.steps);
        assert.deepEqual(rep.records, alone.records);
        assert.equal(rep.numPreemptions, alone.numPreemptions);
        preempted += rep.numPreemptions;
      }
      if (name.includes('preempting')) assert.ok(preempted > 0, 'the workload preempts');
      // The fleet's records are its replicas' together, in workload order.
      assert.deepEqual(fleet.records.map((r) => r.index), requests.map((r) => r.index));
    });
  }
}

test('round-robin spreads requests evenly, in turn', () => {
  const requests = Array.from({ length: 10 }, (_, i) => req(i, 8, 4, i * 3));
  const fleet = simulateFleet({ requests, scheduler: simOptions(), replicas: 3, router: createRouter('round-robin'), stepTimeMs: () => 10 });
  assert.deepEqual(Array.from(fleet.assignment), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
  assert.deepEqual(fleet.replicas.map((r) => r.records.length), [4, 3, 3]);
  const f = fleetFigures(fleet, requests);
  assert.equal(f.requestsMaxOverMean, 4 / (10 / 3));
});

test('least-queue sends a request to the idle replica; round-robin does not look', () => {
  // Replicas 0 and 2 get long requests, replica 1 a one-token one that is done after its first step
  // (10 ms); at 100 ms replica 1 is idle while the others still run.
  const requests = [req(0, 8, 50), req(1, 8, 1), req(2, 8, 50), req(3, 8, 4, 100)];
  const run = (router: RouterName) => simulateFleet({ requests, scheduler: simOptions(), replicas: 3, router: createRouter(router), stepTimeMs: () => 10 });
  const lq = run('least-queue');
  assert.deepEqual(Array.from(lq.assignment), [0, 1, 2, 1]);
  // Nothing ahead of it there: its first token comes one step after it arrives.
  assert.equal(lq.records[3].chunkMs[0], 110);
  assert.deepEqual(Array.from(run('round-robin').assignment), [0, 1, 2, 0]);
});

test('prefix-affinity keeps requests of a prefix together and raises the prefix hit rate over round-robin', () => {
  // 8 prompts' prefixes of 64 tokens (16 blocks each) over 4 replicas whose caches (120 blocks) hold
  // only a few of them beside the running requests: round-robin makes every replica cycle through
  // all 8, and evict; prefix-affinity gives each replica a couple.
  const requests = buildWorkload(
    { kind: 'synthetic', seed: 3, numRequests: 240, promptDist: { kind: 'uniform', min: 4, max: 20 }, outputDist: { kind: 'uniform', min: 4, max: 16 }, arrival: { kind: 'poisson', qps: 800 }, sharedPrefix: { length: 64, groups: 8 } },
    { vocabSize: 1000, bosId: 1, maxModelLen: 512 },
  ).requests;
  const sched = simOptions({ numBlocks: 120, maxNumSeqs: 4, maxNumBatchedTokens: 256 });
  const figures = (router: RouterName) => {
    const fleet = simulateFleet({ requests, scheduler: sched, replicas: 4, router: createRouter(router), stepTimeMs: stepTime });
    assert.ok(fleet.records.every((r) => r.success));
    return fleetFigures(fleet, requests);
  };
  const rr = figures('round-robin');
  const pa = figures('prefix-affinity');
  assert.equal(rr.replicasPerPrefixGroup, 4);
  assert.ok(pa.replicasPerPrefixGroup! <= 2, `prefix-affinity: ${pa.replicasPerPrefixGroup} replicas per prefix group`);
  assert.ok(pa.prefixHitRate > rr.prefixHitRate + 0.1, `hit rate ${pa.prefixHitRate} vs round-robin's ${rr.prefixHitRate}`);
  // Not by piling everything onto a few replicas.
  assert.ok(pa.requestsMaxOverMean < 1.5, `requests max/mean ${pa.requestsMaxOverMean}`);
});

test('the fleet refuses a replica count below one and several replicas without a router', () => {
  const requests: SimRequest[] = [req(0, 4, 2)];
  assert.throws(() => simulateFleet({ requests, scheduler: simOptions(), replicas: 0, stepTimeMs: () => 1 }), (e: unknown) => e instanceof SimulationError && /integer >= 1, got 0/.test((e as Error).message));
  assert.throws(() => simulateFleet({ requests, scheduler: simOptions(), replicas: 2, stepTimeMs: () => 1 }), /2 replicas need a router/);
});
