// A counter-based random number generator: the n-th draw of a stream is a pure function of
// (seed, n), computed directly instead of by advancing hidden state. That is what makes sampling
// independent of the batch: a sequence's token at output step n uses draw n of its own stream no
// matter which other sequences share the step, how many steps ran before, or whether the sequence
// was preempted and recomputed.
//
// The function is Philox-2x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011), written with 32-bit integer math so it needs no BigInt.

const PHILOX_M = 0xd256d193;
const PHILOX_W = 0x9e3779b9;
const TWO_POW_32 = 4294967296;

/** High 32 bits of the 64-bit product of two uint32 values, from 16-bit halves so no partial product exceeds 2^53. */
function mulHi32(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const lolo = aLo * bLo;
  const hilo = aHi * bLo;
  const lohi = aLo * bHi;
  const hihi = aHi * bHi;
  const middle = (lolo >>> 16) + (hilo & 0xffff) + (lohi & 0xffff);
  return (hihi + (hilo >>> 16) + (lohi >>> 16) + Math.floor(middle / 65536)) >>> 0;
}

/**
 * Philox-2x32-10: encrypts the 64-bit counter (c0, c1) under the 32-bit key. Returns the two output
 * words in `out` (uint32 each). Exported for the known-answer test.
 */
export function philox2x32(c0: number, c1: number, key: number, out: Uint32Array | number[]): void {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let k = key >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi = mulHi32(PHILOX_M, x0);
    const lo = Math.imul(PHILOX_M, x0) >>> 0;
    x0 = (hi ^ k ^ x1) >>> 0;
    x1 = lo;
    k = (k + PHILOX_W) >>> 0;
  }
  out[0] = x0;
  out[1] = x1;
}

const words = new Uint32Array(2);

/** Low and high 32-bit words of an integer seed (any safe integer, negatives in two's complement). */
function seedWords(seed: number): [lo: number, hi: number] {
  return [seed >>> 0, Math.floor(seed / TWO_POW_32) >>> 0];
}

/**
 * Draw number `step` of the stream keyed by `seed`, uniform in [0, 1) with 53 random bits.
 * `seed` is an integer (safe-integer range); `step` a non-negative integer below 2^32.
 */
export function uniformAt(seed: number, step: number): number {
  const [lo, hi] = seedWords(seed);
  // The key takes the seed's low word; its high word rides in the counter beside the step.
  philox2x32(step, hi, lo, words);
  return ((words[0] >>> 5) * 67108864 + (words[1] >>> 6)) / 9007199254740992;
}

/**
 * A 53-bit non-negative integer hashed from (seed, index): the seed of one stream derived from
 * another, e.g. completion `index` of a request that gave one seed for all its completions.
 */
export function mixSeed(seed: number, index: number): number {
  const [lo, hi] = seedWords(seed);
  // Same construction as uniformAt, under a key flipped by a constant, so derived seeds are a
  // stream of their own rather than reused sampling draws; (index, seed) pairs never collide
  // before the output is cut to 53 bits.
  philox2x32(index, hi, (lo ^ 0x5bd1e995) >>> 0, words);
  return (words[0] >>> 11) * TWO_POW_32 + words[1];
}

/**
 * The seed of completion `index` of a request. With a request seed, completion 0 uses that seed
 * as is and the others a hash of (seed, index), so every completion has its own reproducible
 * stream. Without one, a fresh random seed (non-negative, 53 bits).
 */
export function deriveSeed(requestSeed: number | undefined, index: number): number {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`completion index must be an integer >= 0, got ${index}`);
  if (requestSeed === undefined) {
    const w = crypto.getRandomValues(new Uint32Array(2));
    return (w[0] >>> 11) * 4294967296 + w[1];
  }
  if (!Number.isSafeInteger(requestSeed)) throw new RangeError(`seed must be an integer, got ${requestSeed}`);
  return index === 0 ? requestSeed : mixSeed(requestSeed, index);
}
