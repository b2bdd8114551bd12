import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockPool, KvCacheError } from '../../src/engine/block-pool.js';
import { hashBlock } from '../../src/engine/kv-cache-manager.js';

function chainHashes(tokens: number[], bs: number): string[] {
  const out: string[] = [];
  for (let j = 0; (j + 1) * bs <= tokens.length; j++) out.push(hashBlock(j === 0 ? null : out[j - 1], tokens, j * bs, bs));
  return out;
}

test('allocate and free keep free + used == total; double free and exhaustion are clear errors', () => {
  const kv = new BlockPool({ numBlocks: 4, blockSize: 2, enablePrefixCaching: false });
  const a = [kv.allocate(), kv.allocate(), kv.allocate()];
  assert.deepEqual(a, [0, 1, 2]);
  assert.equal(kv.numUsedBlocks, 3);
  assert.equal(kv.numFreeBlocks, 1);
  assert.equal(kv.usage(), 0.75);
  kv.checkInvariants([a]);
  kv.allocate();
  assert.throws(() => kv.allocate(), (e: unknown) => e instanceof KvCacheError && /no free KV block/.test(e.message));
  kv.free([3]);
  kv.free(a);
  assert.equal(kv.numFreeBlocks, 4);
  kv.checkInvariants([]);
  assert.throws(() => kv.release(1), /double free of KV block 1/);
});

test('shared blocks are freed only when the last holder lets go', () => {
  const kv = new BlockPool({ numBlocks: 3, blockSize: 2, enablePrefixCaching: false });
  const b = kv.allocate();
  kv.share(b);
  assert.equal(kv.refCount(b), 2);
  kv.checkInvariants([[b], [b]]);
  kv.release(b);
  assert.equal(kv.numFreeBlocks, 2);
  kv.release(b);
  assert.equal(kv.numFreeBlocks, 3);
  assert.throws(() => kv.share(b), /not allocated/);
});

test('checkInvariants catches leaks and refcount mismatches', () => {
  const kv = new BlockPool({ numBlocks: 3, blockSize: 2, enablePrefixCaching: false });
  const b = kv.allocate();
  assert.throws(() => kv.checkInvariants([]), /refcount 1 but 0/);
  assert.throws(() => kv.checkInvariants([[b], [b]]), /refcount 1 but 2/);
  kv.checkInvariants([[b]]);
});

test('prefix cache: registered full blocks are found by chained hash, verified by tokens, and acquired', () => {
  const bs = 4;
  const kv = new BlockPool({ numBlocks: 8, blockSize: bs, enablePrefixCaching: true });
  const tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const hashes = chainHashes(tokens, bs);
  assert.equal(hashes.length, 2);
  const table = [kv.allocate(), kv.allocate(), kv.allocate()];
  assert.ok(kv.register(table[0], hashes[0], tokens, 0));
  assert.ok(kv.register(table[1], hashes[1], tokens, 4));
  assert.equal(kv.numCachedBlocks, 2);
  assert.ok(kv.isCached(table[0]));

  // Same first block, different second block: only the first hits.
  const other = [1, 2, 3, 4, 5, 6, 7, 0, 9];
  assert.deepEqual(kv.findCachedPrefix(chainHashes(other, bs), other, 2), [table[0]]);
  // Same second block after a different first one: the chain makes it a miss.
  const shifted = [0, 2, 3, 4, 5, 6, 7, 8];
  assert.deepEqual(kv.findCachedPrefix(chainHashes(shifted, bs), shifted, 2), []);
  assert.deepEqual(kv.findCachedPrefix(hashes, tokens, 2), [table[0], table[1]]);
  assert.deepEqual(kv.findCachedPrefix(hashes, tokens, 1), [table[0]]);

  // A forged hash (a collision) is caught by comparing the block's tokens.
  const liar = [9, 9, 9, 9];
  assert.deepEqual(kv.findCachedPrefix([hashes[0]], liar, 1), []);

  // The same prefix in a second block is not registered twice.
  const dup = kv.allocate();
  assert.equal(kv.register(dup, hashes[0], tokens, 0), false);
  assert.equal(kv.isCached(dup), false);

  kv.free(table);
  kv.free([dup]);
  // Unreferenced cached blocks still count as free, yet keep their prefix.
  assert.equal(kv.numFreeBlocks, 8);
  kv.checkInvariants([]);
  const hits = kv.findCachedPrefix(hashes, tokens, 2);
  assert.deepEqual(hits, [table[0], table[1]]);
  assert.equal(kv.countEvictable(hits), 2);
  kv.acquire(hits);
  assert.equal(kv.numFreeBlocks, 6);
  kv.checkInvariants([hits]);
  kv.free(hits);
  kv.checkInvariants([]);
});

test('cached blocks are evicted only when no clean block is left, least recently used first', () => {
  const bs = 2;
  const kv = new BlockPool({ numBlocks: 4, blockSize: bs, enablePrefixCaching: true });
  const a = [10, 11, 12, 13];
  const b = [20, 21, 22, 23];
  const ha = chainHashes(a, bs);
  const hb = chainHashes(b, bs);
  const ta = [kv.allocate(), kv.allocate()];
  const tb = [kv.allocate(), kv.allocate()];
  ta.forEach((blk, j) => kv.register(blk, ha[j], a, j * bs));
  tb.forEach((blk, j) => kv.register(blk, hb[j], b, j * bs));
  kv.free(ta); // a's blocks become evictable first (older)
  kv.free(tb);
  assert.equal(kv.numFreeBlocks, 4);
  // Allocation evicts a's deepest block first (freed tail first), then a's root.
  const x = kv.allocate();
  assert.equal(x, ta[1]);
  assert.equal(kv.evictions, 1);
  assert.deepEqual(kv.findCachedPrefix(ha, a, 2), [ta[0]]);
  assert.deepEqual(kv.findCachedPrefix(hb, b, 2), tb);
  // Touching b's prefix (acquire + free) makes it most recently used; a's root goes next.
  kv.acquire(tb);
  kv.free(tb);
  assert.equal(kv.allocate(), ta[0]);
  assert.deepEqual(kv.findCachedPrefix(ha, a, 2), []);
  assert.deepEqual(kv.findCachedPrefix(hb, b, 2), tb);
  kv.checkInvariants([[x], [ta[0]]]);
});

test('without prefix caching nothing is registered or found', () => {
  const kv = new BlockPool({ numBlocks: 2, blockSize: 2, enablePrefixCaching: false });
  const t = [1, 2];
  const b = kv.allocate();
  assert.equal(kv.register(b, hashBlock(null, t, 0, 2), t, 0), false);
  assert.deepEqual(kv.findCachedPrefix([hashBlock(null, t, 0, 2)], t, 1), []);
});

test('constructor rejects bad sizes', () => {
  assert.throws(() => new BlockPool({ numBlocks: 0, blockSize: 2, enablePrefixCaching: true }), /numBlocks must be an integer >= 1/);
  assert.throws(() => new BlockPool({ numBlocks: 2, blockSize: 1.5, enablePrefixCaching: true }), /blockSize/);
});
