// The routers, each deciding from replica views set up by hand: what it picks, and what breaks ties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRouter, type ReplicaView } from '../../src/sim/routers/index.js';
import { PrefixAffinityRouter } from '../../src/sim/routers/prefix-affinity.js';
import type { PromptProbe, SimRequest } from '../../src/sim/replica.js';

interface Stub {
  waiting?: number;
  running?: number;
  kv?: number;
  /** Cached prefix tokens this replica reports for any prompt. */
  hit?: number;
}

function views(stubs: Stub[]): ReplicaView[] {
  return stubs.map((s, index) => ({
    index,
    numWaiting: s.waiting ?? 0,
    numRunning: s.running ?? 0,
    kvUsage: s.kv ?? 0,
    cachedPrefixTokens: (_p: PromptProbe) => s.hit ?? 0,
  }));
}

const request: SimRequest = { index: 0, promptTokenIds: [1, 2, 3, 4, 5, 6, 7, 8], outputLen: 4, arrivalMs: 0 };

test('round-robin takes the replicas in turn, whatever their state', () => {
  const r = createRouter('round-robin');
  const v = views([{ waiting: 9 }, {}, { running: 3 }]);
  assert.deepEqual(Array.from({ length: 7 }, () => r.route(request, v)), [0, 1, 2, 0, 1, 2, 0]);
});

test('least-queue: fewest waiting first, then fewest running; equal replicas take turns', () => {
  const r = createRouter('least-queue');
  assert.equal(r.route(request, views([{ waiting: 1, running: 0 }, { waiting: 0, running: 5 }, { waiting: 2 }])), 1);
  assert.equal(r.route(request, views([{ running: 4 }, { running: 2 }, { running: 3 }])), 1);
  // Three idle replicas: the tie goes round, not always to replica 0.
  const idle = createRouter('least-queue');
  const v = views([{}, {}, {}]);
  assert.deepEqual([idle.route(request, v), idle.route(request, v), idle.route(request, v)], [0, 1, 2]);
});

test('kv-usage: the emptiest KV cache; equal caches go to the shorter queue', () => {
  const r = createRouter('kv-usage');
  assert.equal(r.route(request, views([{ kv: 0.5 }, { kv: 0.2, waiting: 3 }, { kv: 0.4 }])), 1);
  assert.equal(r.route(request, views([{ kv: 0.1, waiting: 2 }, { kv: 0.1, waiting: 1 }, { kv: 0.3 }])), 1);
});

test('prefix-affinity: the longest cached prefix wins; a shorter queue breaks a tie', () => {
  const r = createRouter('prefix-affinity');
  assert.equal(r.route(request, views([{ hit: 0 }, { hit: 64, running: 5 }, { hit: 32 }])), 1);
  assert.equal(r.route(request, views([{ hit: 64, running: 6 }, { hit: 64, running: 2 }, { hit: 0 }])), 1);
});

test('prefix-affinity: with no hit anywhere it routes as least-queue', () => {
  const r = createRouter('prefix-affinity');
  assert.equal(r.route(request, views([{ running: 3 }, { waiting: 1 }, { running: 1 }])), 2);
});

test('prefix-affinity: a replica loaded beyond the least-loaded one by more than the limit loses its hit', () => {
  const r = new PrefixAffinityRouter(4);
  // Replica 0 holds the prefix but carries 5 more requests than replica 2: filtered out.
  assert.equal(r.route(request, views([{ hit: 64, running: 7 }, { hit: 16, running: 4 }, { running: 2 }])), 1);
  // Within the limit, the hit wins over a shorter queue.
  assert.equal(r.route(request, views([{ hit: 64, running: 6 }, { hit: 16, running: 4 }, { running: 2 }])), 0);
  // Every replica with a hit overloaded: least-queue among all.
  assert.equal(r.route(request, views([{ hit: 64, waiting: 9 }, { running: 3 }, { running: 2 }])), 2);
  assert.throws(() => new PrefixAffinityRouter(-1), /maxImbalance must be an integer >= 0/);
});
