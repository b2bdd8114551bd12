import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, RunnerOutputError } from '../../src/engine/scheduler.js';
import { InvalidRequestError, PromptTooLongError, QueueFullError } from '../../src/engine/request-errors.js';
import { deriveSeed } from '../../src/engine/counter-rng.js';
import { Driver, prompt, sampling, schedOptions, type Completion } from './scheduler-driver.js';
import type { SchedulerOutput } from '../../src/engine/types.js';

const tokensOf = (m: Map<string, Completion[]>) => new Map([...m].map(([k, cs]) => [k, cs.map((c) => c.tokenIds)]));
const entry = (out: SchedulerOutput, seqId: number) => out.scheduled.find((s) => s.seqId === seqId);

test('decodes go first; a new prompt fills the rest of the token budget, chunked across steps', () => {
  const d = new Driver({ maxNumBatchedTokens: 16, blockSize: 4 });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 6), sampling: sampling({ maxTokens: 20 }) });
  let out = d.step();
  assert.deepEqual(out.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.sample]), [[0, 6, true]]);
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 40), sampling: sampling({ maxTokens: 2 }) });
  out = d.step();
  // a decodes one token; b takes the remaining 15 tokens of the budget.
  assert.deepEqual(out.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.startPosition, s.sample]), [[0, 1, 6, true], [1, 15, 0, false]]);
  assert.equal(out.numBatchedTokens, 16);
  out = d.step();
  assert.deepEqual(out.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.startPosition, s.sample]), [[0, 1, 7, true], [1, 15, 15, false]]);
  out = d.step();
  assert.deepEqual(out.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.startPosition, s.sample]), [[0, 1, 8, true], [1, 10, 30, true]]);
  // b's block table covers exactly its 40 computed positions.
  assert.equal(entry(out, 1)!.blockTable.length, 10);
  d.run();
  assert.equal(d.completions.get('b')![0].tokenIds.length, 2);
});

test('long_prefill_token_threshold keeps a long prompt from blocking a short one behind it', () => {
  const run = (threshold: number) => {
    const d = new Driver({ maxNumBatchedTokens: 32, longPrefillTokenThreshold: threshold });
    d.add({ requestId: 'long', promptTokenIds: prompt(1, 100), sampling: sampling({ maxTokens: 1 }) });
    d.add({ requestId: 'short', promptTokenIds: prompt(2, 5), sampling: sampling({ maxTokens: 1 }) });
    return d.step();
  };
  const capped = run(8);
  assert.deepEqual(capped.scheduled.map((s) => s.tokenIds.length), [8, 5]);
  assert.equal(capped.scheduled[1].sample, true, 'the short prompt completes in the first step');
  const uncapped = run(0);
  assert.deepEqual(uncapped.scheduled.map((s) => s.tokenIds.length), [32], 'without the cap the long prompt takes the whole budget');
});

test('max_num_seqs bounds the running set; others wait in arrival order', () => {
  const d = new Driver({ maxNumSeqs: 3, maxNumBatchedTokens: 64 });
  for (let i = 0; i < 7; i++) d.add({ requestId: `r${i}`, promptTokenIds: prompt(i, 3), sampling: sampling({ maxTokens: 3 + i }) });
  const firstStep = new Map<string, number>();
  d.onStep = (out) => {
    assert.ok(d.sched.numRunning <= 3);
    for (const s of out.scheduled) {
      const id = `r${s.seqId}`;
      if (!firstStep.has(id)) firstStep.set(id, out.step);
    }
  };
  d.run();
  const order = [...firstStep.entries()].sort((a, b) => a[1] - b[1] || Number(a[0].slice(1)) - Number(b[0].slice(1))).map(([id]) => id);
  assert.deepEqual(order, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
  assert.equal(firstStep.get('r3'), 3, 'r3 joins the step after r0 finishes');
});

test('priority policy: lower priority value is admitted first, ties by arrival', () => {
  const d = new Driver({ maxNumSeqs: 1, maxNumBatchedTokens: 64, schedulingPolicy: 'priority' });
  const order: string[] = [];
  const prios = [5, 1, 3, 1, 0];
  prios.forEach((p, i) => d.add({ requestId: `p${i}`, promptTokenIds: prompt(i, 4), sampling: sampling({ maxTokens: 2 }), priority: p }));
  d.onStep = (out) => {
    for (const s of out.scheduled) if (s.startPosition === 0) order.push(`p${s.seqId}`);
  };
  d.run();
  assert.deepEqual(order, ['p4', 'p1', 'p3', 'p2', 'p0']);

  const f = new Driver({ maxNumSeqs: 1, maxNumBatchedTokens: 64, schedulingPolicy: 'fcfs' });
  const forder: string[] = [];
  prios.forEach((p, i) => f.add({ requestId: `p${i}`, promptTokenIds: prompt(i, 4), sampling: sampling({ maxTokens: 2 }), priority: p }));
  f.onStep = (out) => {
    for (const s of out.scheduled) if (s.startPosition === 0) forder.push(`p${s.seqId}`);
  };
  f.run();
  assert.deepEqual(forder, ['p0', 'p1', 'p2', 'p3', 'p4'], 'fcfs ignores priority');
});

test('out of blocks: the latest-arrived running sequence is preempted, counted, requeued first, and recomputes the same tokens', () => {
  const reqs = Array.from({ length: 4 }, (_, i) => ({ requestId: `r${i}`, promptTokenIds: prompt(10 + i, 6), sampling: sampling({ maxTokens: 14, temperature: 0.8, seed: i, logprobs: 2 }) }));
  const roomy = new Driver({ numBlocks: 64 });
  for (const r of reqs) roomy.add(r);
  roomy.run();

  const tight = new Driver({ numBlocks: 12, blockSize: 4 });
  for (const r of reqs) tight.add(r);
  const victims: number[] = [];
  tight.onStep = (out) => victims.push(...out.finishedSeqIds.filter((id) => tight.sched.getRequest(`r${id}`)?.seqs[0].status === 'waiting'));
  tight.run();
  const stats = tight.sched.stats();
  assert.ok(stats.preemptions >= 2, `expected preemptions, got ${stats.preemptions}`);
  assert.deepEqual(tokensOf(tight.completions), tokensOf(roomy.completions));
  assert.deepEqual(
    [...tight.completions.values()].map((c) => c[0].logprobs),
    [...roomy.completions.values()].map((c) => c[0].logprobs),
  );
  // Per-request counts add up to the total, and r0 (the oldest) is never the victim.
  const perRequest = [...tight.completions.values()].map((c) => c[0].numPreemptions);
  assert.equal(perRequest.reduce((a, b) => a + b, 0), stats.preemptions);
  assert.equal(perRequest[0], 0);
  assert.ok(victims.length > 0 && !victims.includes(0));
  // A recomputed sequence is re-announced to the runner with the tokens it had already generated.
  const reannounced = tight.steps.flatMap((s) => s.newSequences).filter((n) => n.outputTokenIds.length > 0);
  assert.ok(reannounced.length > 0);
});

test('priority policy preempts the lowest-priority running sequence', () => {
  const d = new Driver({ numBlocks: 8, blockSize: 2, schedulingPolicy: 'priority', maxNumSeqs: 3 });
  d.add({ requestId: 'low', promptTokenIds: prompt(1, 2), sampling: sampling({ maxTokens: 10 }), priority: 9 });
  d.add({ requestId: 'high', promptTokenIds: prompt(2, 2), sampling: sampling({ maxTokens: 10 }), priority: 0 });
  d.add({ requestId: 'mid', promptTokenIds: prompt(3, 2), sampling: sampling({ maxTokens: 10 }), priority: 5 });
  d.run();
  const pre = (id: string) => d.completions.get(id)![0].numPreemptions;
  assert.equal(pre('high'), 0);
  assert.ok(pre('low') > 0, 'the lowest priority is preempted');
  assert.ok(pre('low') >= pre('mid'));
});

test('max_queue rejects new requests with QueueFullError; admission makes room again', () => {
  const d = new Driver({ maxQueue: 2, maxNumSeqs: 1 });
  d.add({ requestId: 'a', promptTokenIds: [1, 2], sampling: sampling() });
  d.add({ requestId: 'b', promptTokenIds: [1, 2], sampling: sampling() });
  assert.throws(() => d.add({ requestId: 'c', promptTokenIds: [1, 2], sampling: sampling() }), (e: unknown) => e instanceof QueueFullError && /queue is full: 2 requests/.test(e.message));
  d.step(); // a is admitted
  d.add({ requestId: 'c', promptTokenIds: [1, 2], sampling: sampling() });
  assert.throws(() => d.add({ requestId: 'd', promptTokenIds: [1, 2], sampling: sampling() }), QueueFullError);
  d.abort('b');
  d.add({ requestId: 'd', promptTokenIds: [1, 2], sampling: sampling() });
  d.run();
});

test('requests that cannot fit are rejected with errors that name the lengths', () => {
  const s = new Scheduler(schedOptions({ maxModelLen: 20, numBlocks: 64, blockSize: 4, maxNumSeqs: 4 }));
  assert.throws(() => s.addRequest({ promptTokenIds: prompt(1, 21), sampling: sampling({ maxTokens: 1 }) }, 0),
    (e: unknown) => e instanceof PromptTooLongError && /prompt of 21 tokens exceeds the maximum model length of 20/.test(e.message));
  assert.throws(() => s.addRequest({ promptTokenIds: prompt(1, 15), sampling: sampling({ maxTokens: 6 }) }, 0),
    (e: unknown) => e instanceof PromptTooLongError && /15 tokens plus max_tokens 6 is 21 tokens.*20.*lower max_tokens to 5/.test(e.message));
  assert.throws(() => s.addRequest({ promptTokenIds: prompt(1, 20), sampling: sampling({ maxTokens: 1 }) }, 0), /prompt of 20 tokens fills the maximum model length of 20 tokens, leaving no room for max_tokens 1/);
  s.addRequest({ promptTokenIds: prompt(1, 15), sampling: sampling({ maxTokens: 5 }) }, 0);
  const small = new Scheduler(schedOptions({ maxModelLen: 100, numBlocks: 3, blockSize: 4 }));
  assert.throws(() => small.addRequest({ promptTokenIds: prompt(1, 10), sampling: sampling({ maxTokens: 4 }) }, 0),
    (e: unknown) => e instanceof PromptTooLongError && /needs 4 KV blocks of 4 tokens, but the KV cache has only 3 blocks/.test(e.message));
  small.addRequest({ promptTokenIds: prompt(1, 10), sampling: sampling({ maxTokens: 3 }) }, 0); // 12 positions = 3 blocks
  assert.throws(() => s.addRequest({ promptTokenIds: [], sampling: sampling() }, 0), InvalidRequestError);
  assert.throws(() => s.addRequest({ promptTokenIds: [1, -2], sampling: sampling() }, 0), /prompt token 1 must be an integer token id >= 0, got -2/);
  assert.throws(() => s.addRequest({ promptTokenIds: [1], sampling: sampling({ n: 5 }) }, 0), /n \(5\) exceeds max_num_seqs \(4\)/);
  assert.throws(() => s.addRequest({ promptTokenIds: [1], sampling: sampling(), priority: NaN }, 0), /priority must be a finite number/);
  s.addRequest({ requestId: 'x', promptTokenIds: [1], sampling: sampling() }, 0);
  assert.throws(() => s.addRequest({ requestId: 'x', promptTokenIds: [1], sampling: sampling() }, 0), /requestId 'x' is already in use/);
});

test('bad options are rejected by name', () => {
  assert.throws(() => new Scheduler(schedOptions({ maxNumSeqs: 8, maxNumBatchedTokens: 4 })), /maxNumBatchedTokens \(4\) must be at least maxNumSeqs \(8\)/);
  assert.throws(() => new Scheduler(schedOptions({ policy: 'fast' as never })), /policy must be one of continuous, static, none/);
  assert.throws(() => new Scheduler(schedOptions({ blockSize: 0 })), /blockSize must be an integer >= 1/);
  assert.throws(() => new Scheduler(schedOptions({ staticWaitMs: -1 })), /staticWaitMs/);
});

test('abort frees blocks at once and ends every completion with abort, forked or not', () => {
  const d = new Driver({ numBlocks: 32, blockSize: 4, maxNumBatchedTokens: 8 });
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 4), sampling: sampling({ maxTokens: 50 }) });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 20), sampling: sampling({ maxTokens: 5, n: 3 }) });
  d.step();
  d.step();
  assert.ok(d.sched.kv.numUsedBlocks > 0);
  const outs = d.abort('a'); // mid-prefill: completions 1 and 2 were never forked
  assert.deepEqual(outs.map((o) => [o.index, o.finished, o.finishReason]), [[0, true, 'abort'], [1, true, 'abort'], [2, true, 'abort']]);
  assert.deepEqual(d.abort('a'), [], 'aborting twice is a no-op');
  d.abort('b');
  assert.equal(d.sched.kv.numUsedBlocks, 0);
  assert.equal(d.sched.hasWork(), false);
  // The runner is told to drop the aborted sequences with the next step.
  d.add({ requestId: 'c', promptTokenIds: [1, 2, 3], sampling: sampling({ maxTokens: 1 }) });
  const out = d.step();
  assert.deepEqual(out.finishedSeqIds.sort(), [0, 1], 'b and the started completion of a; never-started ones are not sent');
});

test('n > 1: completions share the prompt blocks, copy-on-write the partial block, and match separate seeded requests', () => {
  const p = prompt(7, 10); // 2 full blocks of 4 + a partial block
  const d = new Driver({ blockSize: 4, numBlocks: 64 });
  d.add({ requestId: 'n3', promptTokenIds: p, sampling: sampling({ n: 3, maxTokens: 6, temperature: 1, seed: 42 }) });
  d.step(); // prefill of completion 0
  assert.equal(d.sched.kv.numUsedBlocks, 3);
  const fork = d.step(); // completion 0 decodes, 1 and 2 recompute the last prompt token
  assert.deepEqual(fork.scheduled.map((s) => [s.tokenIds.length, s.startPosition]), [[1, 10], [1, 9], [1, 9]]);
  // Shared full blocks: the first two entries of every table are the same physical blocks.
  const tables = fork.scheduled.map((s) => s.blockTable);
  assert.ok(tables.every((t) => t[0] === tables[0][0] && t[1] === tables[0][1]));
  // The partial block is written by all three: two copies, and the last holder writes in place.
  assert.equal(fork.blockCopies.length, 2);
  assert.equal(new Set(tables.map((t) => t[2])).size, 3);
  assert.equal(d.sched.kv.numUsedBlocks, 5);
  d.run();

  const sep = new Driver({ blockSize: 4, numBlocks: 64 });
  for (let i = 0; i < 3; i++) sep.add({ requestId: `s${i}`, promptTokenIds: p, sampling: sampling({ maxTokens: 6, temperature: 1, seed: deriveSeed(42, i) }) });
  sep.run();
  assert.deepEqual(d.completions.get('n3')!.map((c) => c.tokenIds), [0, 1, 2].map((i) => sep.completions.get(`s${i}`)![0].tokenIds));
  const distinct = new Set(d.completions.get('n3')!.map((c) => c.tokenIds.join(',')));
  assert.equal(distinct.size, 3, 'different seeds give different completions');
});

test('n > 1 with a prompt ending on a block boundary copies the cached last block instead of writing into it', () => {
  const d = new Driver({ blockSize: 4, numBlocks: 64 });
  d.add({ requestId: 'n2', promptTokenIds: prompt(3, 8), sampling: sampling({ n: 2, maxTokens: 3, temperature: 1, seed: 1 }) });
  d.step();
  const fork = d.step();
  const child = fork.scheduled.find((s) => s.startPosition === 7)!;
  assert.equal(fork.blockCopies.length, 1);
  assert.equal(child.blockTable[1], fork.blockCopies[0][1]);
  d.run();
});

test('prefix caching: a request sharing a long prefix computes only its new tokens and yields the same output', () => {
  const shared = prompt(5, 40);
  const second = [...shared, ...prompt(6, 7)];
  const run = (caching: boolean) => {
    const d = new Driver({ blockSize: 4, numBlocks: 64, enablePrefixCaching: caching });
    d.add({ requestId: 'first', promptTokenIds: shared, sampling: sampling({ maxTokens: 4 }) });
    d.run();
    d.add({ requestId: 'second', promptTokenIds: second, sampling: sampling({ maxTokens: 4 }) });
    const out = d.step();
    return { d, out };
  };
  const cached = run(true);
  const plain = run(false);
  assert.equal(cached.out.scheduled[0].startPosition, 40);
  assert.equal(cached.out.scheduled[0].tokenIds.length, 7);
  assert.equal(plain.out.scheduled[0].tokenIds.length, 47);
  cached.d.run();
  plain.d.run();
  const out = cached.d.outputs.filter((o) => o.requestId === 'second');
  assert.equal(out[0].numCachedTokens, 40);
  assert.equal(plain.d.outputs.find((o) => o.requestId === 'second')!.numCachedTokens, 0);
  assert.deepEqual(tokensOf(cached.d.completions), tokensOf(plain.d.completions));
  const st = cached.d.sched.stats();
  assert.equal(st.prefixCacheQueries, 40 + 47);
  assert.equal(st.prefixCacheHits, 40);
});

test('prefix caching never serves the last prompt token from cache: it is recomputed for logits', () => {
  const p = prompt(9, 12); // exactly 3 blocks of 4
  const d = new Driver({ blockSize: 4 });
  d.add({ requestId: 'a', promptTokenIds: p, sampling: sampling({ maxTokens: 2 }) });
  d.run();
  d.add({ requestId: 'b', promptTokenIds: p, sampling: sampling({ maxTokens: 2 }) });
  const out = d.step();
  assert.deepEqual([out.scheduled[0].startPosition, out.scheduled[0].tokenIds.length], [8, 4]);
  d.run();
  assert.deepEqual(d.completions.get('a')![0].tokenIds, d.completions.get('b')![0].tokenIds);
});

test('a preempted sequence reuses its own cached blocks when it is readmitted', () => {
  const d = new Driver({ numBlocks: 10, blockSize: 2, maxNumSeqs: 2 });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 6), sampling: sampling({ maxTokens: 10 }) });
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 6), sampling: sampling({ maxTokens: 10 }) });
  d.run();
  assert.ok(d.sched.stats().preemptions > 0);
  // Recomputing b found blocks it had computed before it was preempted.
  assert.ok(d.sched.stats().prefixCacheHits > 0);
});

test('static: a batch is prefilled padded to its longest prompt, decodes until all finish, and admits nobody meanwhile', () => {
  const d = new Driver({ policy: 'static', staticBatchSize: 3, maxNumSeqs: 8, maxNumBatchedTokens: 64 });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 5), sampling: sampling({ maxTokens: 2 }) });
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 9), sampling: sampling({ maxTokens: 5 }) });
  d.add({ requestId: 'c', promptTokenIds: prompt(3, 3), sampling: sampling({ maxTokens: 3 }) });
  d.add({ requestId: 'd', promptTokenIds: prompt(4, 4), sampling: sampling({ maxTokens: 2 }) });
  const pre = d.step();
  assert.deepEqual(pre.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.padRows ?? 0, s.sample]), [[0, 5, 4, true], [1, 9, 0, true], [2, 3, 6, true]]);
  assert.equal(pre.numBatchedTokens, 27);
  const shapes: Array<Array<[number, number, number]>> = [];
  while (d.sched.getRequest('b')) shapes.push(d.step().scheduled.map((s) => [s.seqId, s.tokenIds.length, s.padRows ?? 0]));
  // Every decode step carries all three rows; finished ones as one padding row; d never joins.
  assert.deepEqual(shapes, [
    [[0, 1, 0], [1, 1, 0], [2, 1, 0]], // a finishes (2 tokens)
    [[1, 1, 0], [2, 1, 0], [0, 0, 1]], // c finishes (3 tokens)
    [[1, 1, 0], [0, 0, 1], [2, 0, 1]],
    [[1, 1, 0], [0, 0, 1], [2, 0, 1]], // b finishes (5 tokens)
  ]);
  const next = d.step();
  assert.deepEqual(next.scheduled.map((s) => [s.seqId, s.tokenIds.length, s.padRows ?? 0]), [[3, 4, 0]], 'd starts only after the batch drained');
  d.run();
});

test('static: a padded batch larger than the token budget is prefilled in column chunks', () => {
  const d = new Driver({ policy: 'static', staticBatchSize: 2, maxNumSeqs: 4, maxNumBatchedTokens: 8 });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 10), sampling: sampling({ maxTokens: 2 }) });
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 3), sampling: sampling({ maxTokens: 2 }) });
  const steps = [d.step(), d.step(), d.step()].map((o) => o.scheduled.map((s) => [s.tokenIds.length, s.padRows ?? 0, s.sample]));
  assert.deepEqual(steps, [
    [[4, 0, false], [3, 1, true]],
    [[4, 0, false], [0, 4, false]],
    [[2, 0, true], [0, 2, false]],
  ]);
  // Then both decode together.
  assert.deepEqual(d.step().scheduled.map((s) => s.tokenIds.length), [1, 1]);
  d.run();
});

test('static with staticDropFinished frees finished rows instead of padding them', () => {
  const d = new Driver({ policy: 'static', staticBatchSize: 2, staticDropFinished: true });
  d.add({ requestId: 'a', promptTokenIds: prompt(1, 4), sampling: sampling({ maxTokens: 1 }) });
  d.add({ requestId: 'b', promptTokenIds: prompt(2, 4), sampling: sampling({ maxTokens: 4 }) });
  d.add({ requestId: 'c', promptTokenIds: prompt(3, 4), sampling: sampling({ maxTokens: 1 }) });
  d.step();
  const used = d.sched.kv.numUsedBlocks;
  const s2 = d.step();
  assert.deepEqual(s2.scheduled.map((s) => [s.seqId, s.padRows ?? 0]), [[1, 0]], 'a was dropped, c has not joined');
  assert.ok(used <= 3);
  d.run();
});

test('static with staticWaitMs waits for a full batch or for the oldest request to have waited long enough', () => {
  const s = new Scheduler(schedOptions({ policy: 'static', staticBatchSize: 3, staticWaitMs: 100 }));
  s.addRequest({ requestId: 'a', promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 1 }) }, 0);
  let out = s.schedule(10).output;
  assert.equal(out.scheduled.length, 0);
  assert.equal(s.nextWakeMs(), 100);
  s.skipStep(out);
  s.addRequest({ requestId: 'b', promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 1 }) }, 20);
  out = s.schedule(50).output;
  assert.equal(out.scheduled.length, 0);
  s.skipStep(out);
  out = s.schedule(100).output;
  assert.equal(out.scheduled.length, 2, 'the wait ran out: the partial batch goes');
  const full = new Scheduler(schedOptions({ policy: 'static', staticBatchSize: 2, staticWaitMs: 1000 }));
  full.addRequest({ promptTokenIds: [1], sampling: sampling() }, 0);
  full.addRequest({ promptTokenIds: [2], sampling: sampling() }, 0);
  assert.equal(full.schedule(1).output.scheduled.length, 2, 'a full batch goes at once');
});

test('none: one request at a time', () => {
  const d = new Driver({ policy: 'none' });
  for (let i = 0; i < 4; i++) d.add({ requestId: `r${i}`, promptTokenIds: prompt(i, 3 + i), sampling: sampling({ maxTokens: 3 }) });
  d.run();
  let current = -1;
  const seen: number[] = [];
  for (const s of d.steps) {
    assert.equal(s.scheduled.length, 1);
    if (s.scheduled[0].seqId !== current) seen.push((current = s.scheduled[0].seqId));
  }
  assert.deepEqual(seen, [0, 1, 2, 3]);
  assert.equal(d.steps.length, 4 * 3);
});

test('continuous, static and none give every request the same tokens', () => {
  const results = (['continuous', 'static', 'none'] as const).map((policy) => {
    const d = new Driver({ policy, staticBatchSize: 3, numBlocks: 40, blockSize: 4, maxNumBatchedTokens: 24 });
    for (let i = 0; i < 7; i++) {
      d.add({ requestId: `r${i}`, promptTokenIds: prompt(i, 2 + 3 * i), sampling: sampling({ maxTokens: 3 + (i % 4), temperature: i % 2, seed: 100 + i, n: i === 3 ? 2 : 1 }) });
    }
    d.run();
    return tokensOf(d.completions);
  });
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
});

test('update() rejects a result missing a token before changing anything; failStep frees the step\'s requests', () => {
  const d = new Driver();
  d.add({ requestId: 'a', promptTokenIds: [1, 2, 3], sampling: sampling({ maxTokens: 3 }) });
  d.add({ requestId: 'b', promptTokenIds: [4, 5], sampling: sampling({ maxTokens: 3 }) });
  const out = d.sched.schedule(1).output;
  assert.throws(() => d.sched.update(out, { sampled: [], forwardMs: 0, sampleMs: 0 }, 2), (e: unknown) => e instanceof RunnerOutputError && /no token for sequence 0/.test(e.message));
  assert.deepEqual(d.sched.failStep(out, 2).sort(), ['a', 'b']);
  assert.equal(d.sched.kv.numUsedBlocks, 0);
  assert.equal(d.sched.hasWork(), false);
  d.sched.checkInvariants();
  assert.equal(d.sched.stats().requestsFailed, 2);
});

test('request timing records arrival, first schedule, every token and finish on the given clock', () => {
  const s = new Scheduler(schedOptions());
  const req = s.addRequest({ promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 2 }) }, 5);
  const d = new Driver();
  let out = s.schedule(7).output;
  s.update(out, d.runner.executeSync(out), 9);
  out = s.schedule(11).output;
  s.update(out, d.runner.executeSync(out), 13);
  assert.deepEqual(req.timing, { arrivalMs: 5, firstScheduledMs: 7, firstTokenMs: 9, tokenTimesMs: [[9, 13]], finishedMs: 13 });
});
