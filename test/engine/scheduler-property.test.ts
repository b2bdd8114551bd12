// Random streams of add / abort / step under small KV capacities. The Driver checks after every
// step that no block leaks or is freed twice (free + used == total, refcounts == table references),
// that the token budget and max_num_seqs hold, and the fake runner checks every KV slot it reads, so
// a block handed to the wrong sequence shows up as an error. On top, every request that was not
// aborted must finish with exactly the tokens of an unconstrained run, and FCFS must admit requests
// in arrival order (nobody starves).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QueueFullError } from '../../src/engine/request-errors.js';
import type { AddRequest } from '../../src/engine/scheduler.js';
import { Driver, prompt, sampling } from './scheduler-driver.js';

const EOS = 0;
const MAX_PROMPT = 20;
const MAX_TOKENS = 10;

const addCmd = fc.record({
  kind: fc.constant('add' as const),
  base: fc.integer({ min: 0, max: 2 }),
  prefixLen: fc.integer({ min: 0, max: 14 }),
  suffixLen: fc.integer({ min: 1, max: 6 }),
  maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
  n: fc.integer({ min: 1, max: 3 }),
  temperature: fc.constantFrom(0, 1),
  seed: fc.integer({ min: 0, max: 1000 }),
  priority: fc.integer({ min: 0, max: 3 }),
});
const abortCmd = fc.record({ kind: fc.constant('abort' as const), which: fc.nat(50) });
const stepCmd = fc.record({ kind: fc.constant('step' as const), count: fc.integer({ min: 1, max: 4 }) });
const command = fc.oneof({ arbitrary: addCmd, weight: 3 }, { arbitrary: abortCmd, weight: 1 }, { arbitrary: stepCmd, weight: 3 });

const config = fc.record({
  policy: fc.constantFrom('continuous' as const, 'continuous' as const, 'static' as const, 'none' as const),
  schedulingPolicy: fc.constantFrom('fcfs' as const, 'priority' as const),
  blockSize: fc.constantFrom(1, 2, 4),
  extraBlocks: fc.integer({ min: 0, max: 12 }),
  maxNumSeqs: fc.integer({ min: 3, max: 6 }),
  extraBudget: fc.integer({ min: 0, max: 30 }),
  longPrefillTokenThreshold: fc.constantFrom(0, 0, 3, 8),
  enablePrefixCaching: fc.boolean(),
  maxQueue: fc.constantFrom(0, 0, 4),
  staticBatchSize: fc.integer({ min: 1, max: 4 }),
  staticDropFinished: fc.boolean(),
  eosProbability: fc.constantFrom(0, 0.15),
});

type AddCmd = typeof addCmd extends fc.Arbitrary<infer T> ? T : never;

function requestFrom(c: AddCmd, id: string): AddRequest {
  const promptTokenIds = [...prompt(c.base + 1, MAX_PROMPT).slice(0, c.prefixLen), ...prompt(1000 + c.seed, c.suffixLen)].slice(0, MAX_PROMPT);
  return { requestId: id, promptTokenIds, priority: c.priority, sampling: sampling({ maxTokens: c.maxTokens, n: c.n, temperature: c.temperature, seed: c.seed }) };
}

test('random add/abort/step streams never leak blocks, respect the budgets, finish every request with unconstrained outputs', () => {
  // What the runs exercised, so the test proves it reached the interesting paths.
  const seen = { preemptions: 0, prefixHits: 0, aborts: 0, forks: 0, staticPadRows: 0, queueFull: 0 };
  fc.assert(
    fc.property(config, fc.array(command, { minLength: 1, maxLength: 30 }), (cfg, cmds) => {
      const bs = cfg.blockSize;
      // Enough blocks for the longest single sequence, plus a little: preemption is frequent.
      const numBlocks = Math.ceil((MAX_PROMPT + MAX_TOKENS - 1) / bs) + cfg.extraBlocks;
      const d = new Driver(
        {
          policy: cfg.policy,
          schedulingPolicy: cfg.schedulingPolicy,
          blockSize: bs,
          numBlocks,
          maxNumSeqs: cfg.maxNumSeqs,
          maxNumBatchedTokens: cfg.maxNumSeqs + cfg.extraBudget,
          longPrefillTokenThreshold: cfg.longPrefillTokenThreshold,
          enablePrefixCaching: cfg.enablePrefixCaching,
          maxQueue: cfg.maxQueue,
          staticBatchSize: cfg.staticBatchSize,
          staticDropFinished: cfg.staticDropFinished,
          maxModelLen: 64,
          eogIds: [EOS],
        },
        { eosId: EOS, eosProbability: cfg.eosProbability },
      );
      const added: AddRequest[] = [];
      const aborted = new Set<string>();
      const firstScheduled: string[] = [];
      const admittedOrder = () => {
        for (const r of added) {
          const st = d.sched.getRequest(r.requestId!);
          if (st?.admitted && !firstScheduled.includes(r.requestId!)) firstScheduled.push(r.requestId!);
        }
      };
      for (const c of cmds) {
        if (c.kind === 'add') {
          const r = requestFrom(c, `r${added.length}`);
          try {
            d.add(r);
            added.push(r);
          } catch (e) {
            if (!(e instanceof QueueFullError)) throw e;
            seen.queueFull++;
          }
        } else if (c.kind === 'abort') {
          if (added.length === 0) continue;
          const r = added[c.which % added.length];
          if (d.sched.getRequest(r.requestId!)) aborted.add(r.requestId!);
          d.abort(r.requestId!);
        } else {
          for (let i = 0; i < c.count && d.sched.hasWork(); i++) {
            d.step();
            admittedOrder();
          }
        }
      }
      let guard = 0;
      while (d.sched.hasWork()) {
        assert.ok(guard++ < 3000, 'no progress');
        d.step();
        admittedOrder();
      }
      assert.equal(d.sched.kv.numUsedBlocks, 0, 'all blocks are back when idle');
      const st = d.sched.stats();
      seen.preemptions += st.preemptions;
      seen.prefixHits += st.prefixCacheHits;
      seen.aborts += st.requestsAborted;
      seen.forks += d.steps.reduce((a, o) => a + o.blockCopies.length, 0);
      seen.staticPadRows += d.steps.reduce((a, o) => a + o.scheduled.reduce((b, x) => b + (x.padRows ?? 0), 0), 0);

      // The same requests, unconstrained and never aborted.
      const ref = new Driver({ numBlocks: 4096, blockSize: bs, maxNumSeqs: 64, maxNumBatchedTokens: 4096, maxModelLen: 64, eogIds: [EOS] }, { eosId: EOS, eosProbability: cfg.eosProbability });
      for (const r of added) ref.add(r);
      ref.run();
      for (const r of added) {
        const got = d.completions.get(r.requestId!)!;
        const want = ref.completions.get(r.requestId!)!;
        for (let i = 0; i < got.length; i++) {
          if (aborted.has(r.requestId!)) {
            assert.deepEqual(got[i].tokenIds, want[i].tokenIds.slice(0, got[i].tokenIds.length), 'an aborted completion is a prefix of the full one');
          } else {
            assert.deepEqual(got[i].tokenIds, want[i].tokenIds, `${r.requestId}#${i}`);
            assert.ok(got[i].finishReason === 'stop' || got[i].finishReason === 'length');
          }
        }
      }
      // FCFS never lets a later request in before an earlier one (so nobody is passed over forever).
      if (cfg.schedulingPolicy === 'fcfs') {
        const arrival = (id: string) => Number(id.slice(1));
        for (let i = 1; i < firstScheduled.length; i++) assert.ok(arrival(firstScheduled[i - 1]) < arrival(firstScheduled[i]), `admission order ${firstScheduled.join(',')}`);
      }
    }),
    { numRuns: 100, seed: 20240601 },
  );
  for (const [k, v] of Object.entries(seen)) assert.ok(v > 0, `the random runs never exercised ${k}`);
});
