// The KV cache manager (vLLM v1's KVCacheManager): each sequence's block table over the block pool.
// The scheduler asks it questions — which prefix of this sequence is already cached, can these
// tokens get slots, which blocks must be copied before they are written — and it does all the block
// arithmetic: slots for new tokens (and look-ahead slots), prefix hits on admission, copy-on-write of
// shared or cached blocks, caching of blocks once they are full and computed, forking a completion
// off its parent's prompt, freeing, and rolling back the last slots. It keeps its own prefix-cache
// statistics. Like the pool, it never touches KV tensors.

import { hash as digest } from 'node:crypto';
import { BlockPool, KvCacheError, type BlockPoolOptions } from './block-pool.js';

export { KvCacheError };

/** The KV side of a sequence; the KV cache manager is the only writer of everything but tokenIds. */
export interface KvSequence {
  readonly tokenIds: readonly number[];
  /** Tokens whose keys and values are in the cache. */
  numComputed: number;
  /**
   * Physical block ids in position order. Replaced, never changed in place: the SchedulerOutputs a
   * table was handed out in (steps in flight, kept outputs) share it without a copy.
   */
  blockTable: number[];
  /** Chained prefix hashes of the sequence's full blocks, computed on demand. */
  readonly blockHashes: string[];
  /** Blocks of the table already offered to the prefix cache. */
  numCachedBlocks: number;
}

/** Copy-on-write: copy KV block src to block dst (all layers) before the step's forward pass. */
export type BlockCopy = [src: number, dst: number];

/** The longest cached prefix of a sequence: its blocks and the tokens they hold. */
export interface PrefixHit {
  blocks: number[];
  numTokens: number;
}

export interface PrefixCacheStats {
  /** Tokens looked up in the prefix cache on admission, and those served from it. */
  queries: number;
  hits: number;
  /** Cached blocks dropped to make room. */
  evictions: number;
}

/** Blocks needed to hold `numTokens` tokens. */
function blocksFor(numTokens: number, blockSize: number): number {
  return Math.ceil(numTokens / blockSize);
}

let hashInput = Buffer.alloc(0);

/**
 * Identity of the full block tokens[start, start+blockSize) given the identity of everything before
 * it: sha256 over (parent hash, token ids). Chaining makes a block's hash stand for its whole prefix,
 * and a cryptographic hash makes two different prefixes sharing a hash practically impossible, so a
 * hit can be trusted without comparing every earlier token (the block's own tokens are still
 * compared as a cheap second guard).
 */
export function hashBlock(parentHash: string | null, tokens: ArrayLike<number>, start: number, blockSize: number): string {
  // One scratch buffer, reused: hashing is synchronous, and a model serves one block size.
  if (hashInput.length !== 44 + 4 * blockSize) hashInput = Buffer.allocUnsafe(44 + 4 * blockSize);
  const buf = hashInput;
  // A base64 sha256 digest is always 44 characters; the root block uses a fixed filler instead.
  buf.write(parentHash ?? '-'.repeat(44), 0, 44, 'latin1');
  for (let i = 0; i < blockSize; i++) buf.writeInt32LE(tokens[start + i], 44 + 4 * i);
  return digest('sha256', buf, 'base64');
}

const NO_COPIES: readonly BlockCopy[] = Object.freeze([]);
const NO_HIT: PrefixHit = { blocks: [], numTokens: 0 };

export class KvCacheManager {
  readonly pool: BlockPool;
  readonly blockSize: number;
  private queries = 0;
  private hits = 0;

  constructor(opts: BlockPoolOptions) {
    this.pool = new BlockPool(opts);
    this.blockSize = opts.blockSize;
  }

  get numBlocks(): number {
    return this.pool.numBlocks;
  }

  /** Blocks that can be allocated now (clean plus evictable cached ones). */
  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  /** Blocks referenced by at least one sequence. */
  get numUsedBlocks(): number {
    return this.pool.numUsedBlocks;
  }

  /** Blocks a sequence of `numTokens` tokens holds. */
  blocksNeeded(numTokens: number): number {
    return blocksFor(numTokens, this.blockSize);
  }

  stats(): PrefixCacheStats {
    return { queries: this.queries, hits: this.hits, evictions: this.pool.evictions };
  }

  /**
   * The cached blocks holding the longest cached prefix of the sequence (never its last token: that
   * one is computed for its logits). A pure lookup: nothing is referenced until allocateSlots().
   */
  computedPrefix(seq: KvSequence): PrefixHit {
    if (!this.pool.enablePrefixCaching) return NO_HIT;
    const bs = this.blockSize;
    const maxBlocks = Math.floor((seq.tokenIds.length - 1) / bs);
    this.ensureHashes(seq, maxBlocks);
    const blocks = this.pool.findCachedPrefix(seq.blockHashes, seq.tokenIds, maxBlocks);
    return { blocks, numTokens: blocks.length * bs };
  }

  /**
   * Makes room in the sequence's block table for `numNewTokens` tokens past its computed ones, plus
   * `lookahead` slots beyond them (speculative tokens). On admission `newComputedBlocks` (the
   * computedPrefix() hit, possibly empty) starts the table and counts as computed. New blocks go past
   * the table's end; the block the first new token is written into gets a private copy first when it
   * is shared or cached (copy-on-write). Returns the copies to make, or null — having changed
   * nothing — when free blocks are short.
   */
  allocateSlots(seq: KvSequence, numNewTokens: number, lookahead = 0, newComputedBlocks?: readonly number[]): readonly BlockCopy[] | null {
    if (newComputedBlocks) return this.admit(seq, numNewTokens + lookahead, newComputedBlocks);
    const pool = this.pool;
    const bs = this.blockSize;
    const table = seq.blockTable;
    const fresh = Math.max(0, blocksFor(seq.numComputed + numNewTokens + lookahead, bs) - table.length);
    const first = Math.floor(seq.numComputed / bs);
    const cow = first < table.length && (pool.refCount(table[first]) > 1 || pool.isCached(table[first]));
    if (pool.numFreeBlocks < fresh + (cow ? 1 : 0)) return null;
    if (fresh === 0 && !cow) return NO_COPIES;
    // A new table rather than a change to this one, which SchedulerOutputs already handed out share.
    const next = table.slice();
    let copies = NO_COPIES;
    if (cow) {
      const src = table[first];
      const dst = pool.allocate();
      copies = [[src, dst]];
      pool.release(src);
      next[first] = dst;
    }
    for (let i = 0; i < fresh; i++) next.push(pool.allocate());
    seq.blockTable = next;
    return copies;
  }

  /** Admission: the prefix hit starts the table and counts as computed; `numSlots` more follow it. */
  private admit(seq: KvSequence, numSlots: number, hits: readonly number[]): readonly BlockCopy[] | null {
    if (seq.blockTable.length > 0) throw new KvCacheError('prefix hits can only start an empty block table');
    const pool = this.pool;
    const computed = hits.length * this.blockSize;
    // A hit never holds the position written next (computedPrefix leaves the last token out), so
    // nothing needs copying. Acquiring an unreferenced hit takes it out of the free blocks.
    const fresh = Math.max(0, blocksFor(computed + numSlots, this.blockSize) - hits.length);
    if (pool.numFreeBlocks - pool.countEvictable(hits) < fresh) return null;
    pool.acquire(hits);
    seq.blockTable = hits.slice();
    seq.numComputed = computed;
    seq.numCachedBlocks = hits.length;
    if (pool.enablePrefixCaching) {
      this.queries += seq.tokenIds.length;
      this.hits += computed;
    }
    for (let i = 0; i < fresh; i++) seq.blockTable.push(pool.allocate());
    return NO_COPIES;
  }

  /**
   * Records that the runner has computed the sequence's first `numComputed` tokens, and offers its
   * newly full blocks to the prefix cache so later requests can reuse them.
   */
  cacheBlocks(seq: KvSequence, numComputed: number): void {
    seq.numComputed = numComputed;
    if (!this.pool.enablePrefixCaching) return;
    const bs = this.blockSize;
    const full = Math.floor(seq.numComputed / bs);
    if (full <= seq.numCachedBlocks) return;
    this.ensureHashes(seq, full);
    for (let j = seq.numCachedBlocks; j < full; j++) this.pool.register(seq.blockTable[j], seq.blockHashes[j], seq.tokenIds, j * bs);
    seq.numCachedBlocks = full;
  }

  /**
   * A completion forked off its parent: the child shares the blocks holding the parent's first
   * `numTokens` tokens and counts all but the last as computed. It recomputes that last token for
   * logits of its own, writing it into a private copy of its block (copy-on-write).
   */
  fork(parent: KvSequence, child: KvSequence, numTokens: number): void {
    const bs = this.blockSize;
    child.blockTable = parent.blockTable.slice(0, blocksFor(numTokens, bs));
    for (const b of child.blockTable) this.pool.share(b);
    child.numComputed = numTokens - 1;
    child.blockHashes.push(...parent.blockHashes.slice(0, Math.floor(numTokens / bs)));
    child.numCachedBlocks = Math.floor((numTokens - 1) / bs);
  }

  /**
   * Forgets the last `k` computed slots (rejected speculative tokens): blocks past the new end, and
   * past `lookahead` more slots, go back to the pool (a draft model keeps the look-ahead blocks it
   * writes its proposals' keys and values into, so they stay where it wrote them). A kept block that
   * is cached is copied before it is written again (allocateSlots).
   */
  rollback(seq: KvSequence, k: number, lookahead = 0): void {
    if (!Number.isSafeInteger(k) || k < 0 || k > seq.numComputed) throw new KvCacheError(`cannot roll back ${k} of ${seq.numComputed} computed slots`);
    seq.numComputed -= k;
    const keep = blocksFor(seq.numComputed + lookahead, this.blockSize);
    if (seq.blockTable.length > keep) {
      this.pool.free(seq.blockTable.slice(keep));
      seq.blockTable = seq.blockTable.slice(0, keep);
    }
    const full = Math.floor(seq.numComputed / this.blockSize);
    seq.numCachedBlocks = Math.min(seq.numCachedBlocks, full);
    if (seq.blockHashes.length > full) seq.blockHashes.length = full;
  }

  /** Gives back every block of the sequence; it then holds nothing and has nothing computed. */
  free(seq: KvSequence): void {
    if (seq.blockTable.length > 0) this.pool.free(seq.blockTable);
    // A new array rather than truncation: a step in flight may still hold the old one.
    seq.blockTable = [];
    seq.numComputed = 0;
    seq.numCachedBlocks = 0;
  }

  /**
   * Throws unless the books balance: the pool's invariants against the block tables of every
   * sequence holding blocks, and each of those tables covering the sequence's computed tokens.
   */
  checkInvariants(seqs: Iterable<KvSequence>): void {
    const tables: number[][] = [];
    for (const s of seqs) {
      if (s.blockTable.length < blocksFor(s.numComputed, this.blockSize)) {
        throw new KvCacheError(`a sequence has ${s.numComputed} computed tokens but only ${s.blockTable.length} blocks`);
      }
      tables.push(s.blockTable);
    }
    this.pool.checkInvariants(tables);
  }

  /** Extends the sequence's block hashes over its full blocks, up to `numBlocks`. */
  private ensureHashes(seq: KvSequence, numBlocks: number): void {
    const bs = this.blockSize;
    const hashes = seq.blockHashes;
    const limit = Math.min(numBlocks, Math.floor(seq.tokenIds.length / bs));
    for (let j = hashes.length; j < limit; j++) hashes.push(hashBlock(j === 0 ? null : hashes[j - 1], seq.tokenIds, j * bs, bs));
  }
}
