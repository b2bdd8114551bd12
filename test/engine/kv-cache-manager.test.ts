// The KV cache manager on its own: block tables over the pool, driven the way the scheduler drives
// them (computedPrefix -> allocateSlots on admission, allocateSlots per step, cacheBlocks after the
// step, fork, rollback, free), with the pool's invariants checked after every change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvCacheManager, KvCacheError, type KvSequence } from '../../src/engine/kv-cache-manager.js';

function seq(tokenIds: number[]): KvSequence {
  return { tokenIds, numComputed: 0, blockTable: [], blockHashes: [], numCachedBlocks: 0 };
}

/** What the scheduler does with a sequence: admit it, then compute all its tokens in one step and cache them. */
function prefill(kv: KvCacheManager, s: KvSequence): void {
  const hit = kv.computedPrefix(s);
  assert.ok(kv.allocateSlots(s, s.tokenIds.length - hit.numTokens, 0, hit.blocks));
  kv.cacheBlocks(s, s.tokenIds.length);
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

test('allocateSlots gives a new sequence the blocks its tokens need, plus look-ahead slots, and nothing when blocks are short', () => {
  const kv = new KvCacheManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: false });
  const a = seq(range(1, 6));
  assert.deepEqual(kv.allocateSlots(a, 6, 0, []), []);
  assert.deepEqual(a.blockTable, [0, 1]);
  kv.cacheBlocks(a, 6);
  // Two more tokens fit the second block; three look-ahead slots need a third.
  assert.deepEqual(kv.allocateSlots(a, 2, 3), []);
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  const b = seq(range(1, 9));
  assert.equal(kv.allocateSlots(b, 9, 0, []), null, '3 blocks needed, 1 free');
  assert.deepEqual(b.blockTable, [], 'a refusal changes nothing');
  assert.equal(kv.numFreeBlocks, 1);
  kv.checkInvariants([a, b]);
});

test('admission with a prefix hit: cached full blocks are shared, counted as computed and in the statistics', () => {
  const kv = new KvCacheManager({ numBlocks: 16, blockSize: 4, enablePrefixCaching: true });
  const first = seq(range(1, 10)); // two full blocks and a partial one
  prefill(kv, first);
  assert.equal(first.numCachedBlocks, 2);
  const second = seq([...range(1, 8), 50, 51, 52]);
  const hit = kv.computedPrefix(second);
  assert.deepEqual(hit, { blocks: first.blockTable.slice(0, 2), numTokens: 8 });
  assert.deepEqual(kv.allocateSlots(second, 3, 0, hit.blocks), []);
  assert.equal(second.numComputed, 8);
  assert.deepEqual(second.blockTable.slice(0, 2), first.blockTable.slice(0, 2));
  assert.equal(kv.pool.refCount(first.blockTable[0]), 2);
  assert.deepEqual(kv.stats(), { queries: 10 + 11, hits: 8, evictions: 0 });
  kv.checkInvariants([first, second]);
});

test('the last token is never served from the cache: a prompt of whole blocks hits all but its last block', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  prefill(kv, seq(range(1, 8)));
  assert.equal(kv.computedPrefix(seq(range(1, 8))).numTokens, 4);
  assert.equal(kv.computedPrefix(seq(range(1, 9))).numTokens, 8);
});

test('copy-on-write: writing into a shared or cached block first gets a private copy', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const parent = seq(range(1, 8)); // ends on a block boundary: both blocks cached
  prefill(kv, parent);
  const cachedLast = parent.blockTable[1];
  // Roll back one slot: the next write lands in a cached (immutable) block.
  kv.rollback(parent, 1);
  const copies = kv.allocateSlots(parent, 1)!;
  assert.equal(copies.length, 1);
  assert.equal(copies[0][0], cachedLast);
  assert.equal(parent.blockTable[1], copies[0][1]);
  assert.notEqual(copies[0][1], cachedLast);
  assert.equal(kv.pool.refCount(cachedLast), 0, 'the cached block went back to the pool, still cached');
  assert.ok(kv.pool.isCached(cachedLast));
  kv.checkInvariants([parent]);
});

test('fork: the child shares the prompt blocks, recomputes the last prompt token into its own copy', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const parent = seq(range(1, 10));
  prefill(kv, parent);
  const child = seq(range(1, 10));
  kv.fork(parent, child, 10);
  assert.deepEqual(child.blockTable, parent.blockTable);
  assert.equal(child.numComputed, 9);
  assert.equal(child.numCachedBlocks, 2);
  assert.ok(parent.blockTable.every((b) => kv.pool.refCount(b) === 2));
  kv.checkInvariants([parent, child]);
  // The child's first write goes into the shared partial block: copied. The parent, then its only holder, writes in place.
  const childCopies = kv.allocateSlots(child, 1)!;
  assert.deepEqual(childCopies.map(([src]) => src), [parent.blockTable[2]]);
  assert.deepEqual(kv.allocateSlots(parent, 1), []);
  assert.equal(new Set([child.blockTable[2], parent.blockTable[2]]).size, 2);
  kv.checkInvariants([parent, child]);
});

test('rollback of the last k slots frees the blocks past the new end and leaves caching consistent', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const s = seq(range(1, 10));
  prefill(kv, s);
  assert.equal(s.blockTable.length, 3);
  kv.rollback(s, 3); // 10 -> 7 computed: the third block goes back
  assert.equal(s.numComputed, 7);
  assert.equal(s.blockTable.length, 2);
  assert.equal(s.numCachedBlocks, 1);
  assert.equal(kv.numUsedBlocks, 2);
  kv.checkInvariants([s]);
  kv.rollback(s, 0);
  assert.equal(s.numComputed, 7);
  assert.throws(() => kv.rollback(s, 8), (e: unknown) => e instanceof KvCacheError && /cannot roll back 8 of 7/.test(e.message));
  kv.rollback(s, 7);
  assert.deepEqual([s.numComputed, s.blockTable.length, kv.numUsedBlocks], [0, 0, 0]);
  kv.checkInvariants([s]);
});

test('rollback keeps the look-ahead blocks a draft model writes into, and the same table is extended again', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const s = seq(range(1, 10));
  prefill(kv, s);
  // Two proposals verified and 4 look-ahead slots past them: 10 + 2 + 4 = 16 slots, 4 blocks.
  assert.deepEqual(kv.allocateSlots(s, 0, 6), []);
  const table = s.blockTable;
  assert.equal(table.length, 4);
  kv.rollback(s, 2, 4); // 10 -> 8 computed; 8 + 4 slots still need 3 blocks
  assert.deepEqual(s.blockTable, table.slice(0, 3));
  assert.equal(kv.numUsedBlocks, 3);
  kv.checkInvariants([s]);
  // The next step's slots reuse the kept blocks: the draft's rows in them stay where it wrote them.
  assert.deepEqual(kv.allocateSlots(s, 1, 3), []);
  assert.deepEqual(s.blockTable, table.slice(0, 3));
});

test('free returns every block; cached ones stay findable until space is needed, then go least recently used first', () => {
  const kv = new KvCacheManager({ numBlocks: 5, blockSize: 2, enablePrefixCaching: true });
  const a = seq([10, 11, 12, 13, 14]); // two full blocks + one partial
  const b = seq([20, 21, 22]);
  prefill(kv, a);
  prefill(kv, b);
  assert.equal(kv.numFreeBlocks, 0);
  const aBlocks = a.blockTable.slice();
  kv.free(a);
  kv.free(b);
  assert.deepEqual([a.blockTable, a.numComputed, kv.numFreeBlocks, kv.numUsedBlocks], [[], 0, 5, 0]);
  kv.checkInvariants([a, b]);
  // The clean blocks (partial ones, never cached) go first; then the cached ones, a's deepest first.
  const c = seq(range(100, 6));
  assert.deepEqual(kv.allocateSlots(c, 4, 0, []), []);
  assert.equal(kv.stats().evictions, 0);
  assert.equal(kv.computedPrefix(seq([10, 11, 12, 13, 14])).numTokens, 4);
  kv.cacheBlocks(c, 4);
  assert.deepEqual(kv.allocateSlots(c, 2), []);
  assert.equal(kv.stats().evictions, 1);
  assert.ok(c.blockTable.includes(aBlocks[1]), "a's deepest cached block was evicted first");
  assert.equal(kv.computedPrefix(seq([10, 11, 12, 13, 14])).numTokens, 2, "a's root block is still cached");
  kv.checkInvariants([c]);
});

test('an admission whose unreferenced hits would leave too few free blocks is refused, changing nothing', () => {
  const kv = new KvCacheManager({ numBlocks: 3, blockSize: 2, enablePrefixCaching: true });
  const a = seq([1, 2, 3, 4, 5]);
  prefill(kv, a);
  kv.free(a);
  // Two cached blocks are free; taking them as hits leaves one free block, but three are needed.
  const b = seq([1, 2, 3, 4, 6, 7, 8, 9, 10]);
  const hit = kv.computedPrefix(b);
  assert.equal(hit.numTokens, 4);
  assert.equal(kv.allocateSlots(b, 5, 0, hit.blocks), null);
  assert.deepEqual([b.blockTable, b.numComputed, kv.numFreeBlocks], [[], 0, 3]);
  assert.deepEqual(kv.stats(), { queries: 5, hits: 0, evictions: 0 }, 'a refused admission is not counted');
  kv.checkInvariants([b]);
});

test('without prefix caching nothing is found, cached or counted', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 2, enablePrefixCaching: false });
  const a = seq([1, 2, 3, 4, 5]);
  prefill(kv, a);
  assert.equal(a.numCachedBlocks, 0);
  assert.deepEqual(kv.computedPrefix(seq([1, 2, 3, 4, 5])), { blocks: [], numTokens: 0 });
  assert.deepEqual(kv.stats(), { queries: 0, hits: 0, evictions: 0 });
  assert.equal(kv.pool.numCachedBlocks, 0);
});

test('checkInvariants catches a table too short for its computed tokens', () => {
  const kv = new KvCacheManager({ numBlocks: 4, blockSize: 2, enablePrefixCaching: false });
  const s = seq([1, 2, 3]);
  kv.allocateSlots(s, 3, 0, []);
  s.numComputed = 5;
  assert.throws(() => kv.checkInvariants([s]), /5 computed tokens but only 2 blocks/);
});
