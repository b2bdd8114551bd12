// The physical blocks of the paged KV cache (vLLM's BlockPool): which blocks are free, who holds
// each one (reference counts, so n>1 completions and prefix-cache hits can share blocks), and which
// full blocks hold a known token prefix (hash -> block, for automatic prefix caching). It knows
// nothing of sequences: the KV cache manager (kv-cache-manager.ts) keeps block tables on top of it.
// It never touches KV tensors: the model runner owns the storage and only ever sees block ids.
//
// Free blocks come in two kinds. "Clean" ones hold nothing worth keeping and are handed out first.
// "Evictable" ones are unreferenced but still hold a cached prefix; they sit in an LRU list and are
// reclaimed (their cache entry dropped) only when no clean block is left, so a cached prefix survives
// as long as space allows.

export class KvCacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KvCacheError';
  }
}

export interface BlockPoolOptions {
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
}

const NONE = -1;

export class BlockPool {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;

  private readonly refCounts: Int32Array;
  /** Prefix hash of each block registered in the cache, or null. */
  private readonly blockHash: (string | null)[];
  /** The token ids of each registered block, for the hit guard. */
  private readonly blockTokens: Int32Array;
  private readonly cache = new Map<string, number>();

  /** Free blocks holding nothing cached (a stack: the most recently freed is reused first). */
  private readonly clean: number[] = [];
  /** Unreferenced cached blocks, least recently used at the head (an intrusive doubly linked list). */
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruHead = NONE;
  private lruTail = NONE;
  private lruSize = 0;

  /** Cached blocks dropped to make room. */
  evictions = 0;

  constructor(opts: BlockPoolOptions) {
    if (!Number.isSafeInteger(opts.numBlocks) || opts.numBlocks < 1) throw new RangeError(`numBlocks must be an integer >= 1, got ${opts.numBlocks}`);
    if (!Number.isSafeInteger(opts.blockSize) || opts.blockSize < 1) throw new RangeError(`blockSize must be an integer >= 1, got ${opts.blockSize}`);
    this.numBlocks = opts.numBlocks;
    this.blockSize = opts.blockSize;
    this.enablePrefixCaching = opts.enablePrefixCaching;
    this.refCounts = new Int32Array(opts.numBlocks);
    this.blockHash = new Array<string | null>(opts.numBlocks).fill(null);
    this.blockTokens = new Int32Array(opts.enablePrefixCaching ? opts.numBlocks * opts.blockSize : 0);
    this.lruPrev = new Int32Array(opts.numBlocks).fill(NONE);
    this.lruNext = new Int32Array(opts.numBlocks).fill(NONE);
    // Pushed in reverse so block 0 is handed out first (easier to read in traces).
    for (let b = opts.numBlocks - 1; b >= 0; b--) this.clean.push(b);
  }

  /** Blocks that can be allocated now (clean plus evictable cached ones). */
  get numFreeBlocks(): number {
    return this.clean.length + this.lruSize;
  }

  /** Blocks referenced by at least one sequence. */
  get numUsedBlocks(): number {
    return this.numBlocks - this.numFreeBlocks;
  }

  /** Blocks holding a cached prefix (referenced or not). */
  get numCachedBlocks(): number {
    return this.cache.size;
  }

  /** Fraction of blocks referenced by sequences (0..1). */
  usage(): number {
    return this.numUsedBlocks / this.numBlocks;
  }

  refCount(block: number): number {
    return this.refCounts[block];
  }

  /** A cached block is immutable: writing into it would corrupt every prefix that maps to it. */
  isCached(block: number): boolean {
    return this.blockHash[block] !== null;
  }

  /** Takes one free block (clean first, else evicts the least recently used cached one), refcount 1. */
  allocate(): number {
    let b: number;
    if (this.clean.length > 0) {
      b = this.clean.pop()!;
    } else if (this.lruSize > 0) {
      b = this.lruHead;
      this.lruRemove(b);
      this.cache.delete(this.blockHash[b]!);
      this.blockHash[b] = null;
      this.evictions++;
    } else {
      throw new KvCacheError(`no free KV block: all ${this.numBlocks} blocks are in use`);
    }
    this.refCounts[b] = 1;
    return b;
  }

  /** One more holder of an allocated block (a forked completion sharing its parent's blocks). */
  share(block: number): void {
    if (this.refCounts[block] <= 0) throw new KvCacheError(`cannot share KV block ${block}: it is not allocated`);
    this.refCounts[block]++;
  }

  /**
   * Drops one reference to each block. Blocks are released tail first, so when their cached prefixes
   * later compete for eviction, the deepest (least shareable) blocks go before the shared roots.
   */
  free(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.release(blocks[i]);
  }

  release(block: number): void {
    const rc = this.refCounts[block];
    if (rc <= 0) throw new KvCacheError(`double free of KV block ${block}`);
    this.refCounts[block] = rc - 1;
    if (rc > 1) return;
    if (this.blockHash[block] !== null) this.lruAppend(block);
    else this.clean.push(block);
  }

  /**
   * The longest run of cached blocks matching `hashes` from the first one (each verified against the
   * block's tokens), at most maxBlocks long. Pure lookup: nothing is referenced until acquire().
   */
  findCachedPrefix(hashes: readonly string[], tokens: ArrayLike<number>, maxBlocks: number): number[] {
    const hits: number[] = [];
    if (!this.enablePrefixCaching) return hits;
    const bs = this.blockSize;
    const n = Math.min(maxBlocks, hashes.length);
    for (let j = 0; j < n; j++) {
      const b = this.cache.get(hashes[j]);
      if (b === undefined) break;
      let same = true;
      for (let i = 0; i < bs; i++) {
        if (this.blockTokens[b * bs + i] !== tokens[j * bs + i]) {
          same = false;
          break;
        }
      }
      if (!same) break;
      hits.push(b);
    }
    return hits;
  }

  /** How many of `blocks` are unreferenced (acquiring them takes them out of the free pool). */
  countEvictable(blocks: readonly number[]): number {
    let n = 0;
    for (const b of blocks) if (this.refCounts[b] === 0) n++;
    return n;
  }

  /** References cached blocks found by findCachedPrefix (pulling unreferenced ones off the LRU list). */
  acquire(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (this.blockHash[b] === null) throw new KvCacheError(`KV block ${b} is not cached and cannot be acquired`);
      if (this.refCounts[b] === 0) this.lruRemove(b);
      this.refCounts[b]++;
    }
  }

  /**
   * Records that allocated block `block` now holds the full block of tokens[start, start+blockSize)
   * whose prefix hash is `hash`. A prefix already cached in another block keeps that block; this one
   * then stays private. Returns whether the block was registered.
   */
  register(block: number, hash: string, tokens: ArrayLike<number>, start: number): boolean {
    if (!this.enablePrefixCaching) return false;
    if (this.refCounts[block] <= 0) throw new KvCacheError(`cannot cache KV block ${block}: it is not allocated`);
    if (this.blockHash[block] !== null || this.cache.has(hash)) return false;
    this.blockHash[block] = hash;
    this.cache.set(hash, block);
    const bs = this.blockSize;
    for (let i = 0; i < bs; i++) this.blockTokens[block * bs + i] = tokens[start + i];
    return true;
  }

  /**
   * Throws unless the books balance: free + used == total, every block is in exactly one place, and
   * each block's reference count equals the number of `tables` entries naming it.
   */
  checkInvariants(tables: Iterable<readonly number[]>): void {
    const expected = new Int32Array(this.numBlocks);
    for (const t of tables) for (const b of t) {
      if (!Number.isInteger(b) || b < 0 || b >= this.numBlocks) throw new KvCacheError(`block table names block ${b}, outside 0..${this.numBlocks - 1}`);
      expected[b]++;
    }
    const where = new Int8Array(this.numBlocks);
    for (const b of this.clean) {
      if (where[b]) throw new KvCacheError(`block ${b} is on the free list twice`);
      where[b] = 1;
      if (this.blockHash[b] !== null) throw new KvCacheError(`clean free block ${b} still has a cache entry`);
    }
    let n = 0;
    for (let b = this.lruHead; b !== NONE; b = this.lruNext[b]) {
      if (where[b]) throw new KvCacheError(`block ${b} is both clean and evictable, or listed twice`);
      where[b] = 2;
      if (this.blockHash[b] === null) throw new KvCacheError(`evictable block ${b} has no cache entry`);
      if (++n > this.numBlocks) throw new KvCacheError('LRU list has a cycle');
    }
    if (n !== this.lruSize) throw new KvCacheError(`LRU list holds ${n} blocks but its size says ${this.lruSize}`);
    let used = 0;
    for (let b = 0; b < this.numBlocks; b++) {
      const rc = this.refCounts[b];
      if (rc !== expected[b]) throw new KvCacheError(`block ${b} has refcount ${rc} but ${expected[b]} block-table references`);
      if (rc > 0) {
        used++;
        if (where[b]) throw new KvCacheError(`block ${b} is referenced (refcount ${rc}) yet free`);
      } else if (!where[b]) {
        throw new KvCacheError(`block ${b} is unreferenced but on no free list (leaked)`);
      }
      const h = this.blockHash[b];
      if (h !== null && this.cache.get(h) !== b) throw new KvCacheError(`block ${b} claims a cache entry that points elsewhere`);
    }
    if (used + this.numFreeBlocks !== this.numBlocks) {
      throw new KvCacheError(`used ${used} + free ${this.numFreeBlocks} != total ${this.numBlocks}`);
    }
    if (used !== this.numUsedBlocks) throw new KvCacheError(`used count ${this.numUsedBlocks} disagrees with refcounts (${used})`);
  }

  private lruAppend(b: number): void {
    this.lruPrev[b] = this.lruTail;
    this.lruNext[b] = NONE;
    if (this.lruTail !== NONE) this.lruNext[this.lruTail] = b;
    else this.lruHead = b;
    this.lruTail = b;
    this.lruSize++;
  }

  private lruRemove(b: number): void {
    const p = this.lruPrev[b];
    const n = this.lruNext[b];
    if (p !== NONE) this.lruNext[p] = n;
    else this.lruHead = n;
    if (n !== NONE) this.lruPrev[n] = p;
    else this.lruTail = p;
    this.lruPrev[b] = NONE;
    this.lruNext[b] = NONE;
    this.lruSize--;
  }
}
