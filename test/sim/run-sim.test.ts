// A simulated policy run in the benchmark's shapes: its utilisation figures (accumulated step by step
// so huge runs need not keep their records) equal the benchmark's own functions over the records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulatePolicy, buildSimWorkload, configFromProfile } from '../../src/sim/run-sim.js';
import { HARDWARE, MODELS } from '../../src/sim/profiles.js';
import { slotUtilization, slotCapacity, computeUtilization, decodeThroughput } from '../../src/runs/utilization.js';

const hw = HARDWARE['H100-SXM'];
const model = MODELS['llama-3-8b'];

for (const policy of ['continuous', 'static', 'none'] as const) {
  test(`${policy}: slot utilisation and decode throughput match the benchmark's definitions over the step records`, () => {
    const w = buildSimWorkload({ kind: 'synthetic', seed: 2, numRequests: 40, promptDist: { kind: 'uniform', min: 16, max: 300 }, outputDist: { kind: 'uniform', min: 4, max: 80 }, arrival: { kind: 'poisson', qps: 30 } }, model, {});
    const r = simulatePolicy(w, policy, { hardware: hw, model, load: { maxNumSeqs: 8, staticBatchSize: 8 } });
    assert.ok(r.steps && r.steps.length === r.numSteps);
    assert.deepEqual(r.slot, slotUtilization(r.steps, slotCapacity(policy, 8, 8)));
    const d = decodeThroughput(r.steps);
    assert.ok(d !== null && r.decodeThroughput !== null && Math.abs(r.decodeThroughput - d) < 1e-9 * d);
    assert.deepEqual(r.compute, computeUtilization(r.steps, configFromProfile(model), r.metrics.durationS, hw.peakTflops * 1e12));
    assert.equal(r.metrics.completed, 40);
    assert.ok(r.sim.mbu > 0 && r.sim.mbu < 1 && r.sim.mfu > 0 && r.sim.mfu < 1);
  });
}
