// The one seeded generator behind everything Stepwise must reproduce from a seed alone (random-weight
// models, benchmark workloads): SplitMix32 to spread a seed into state, xoshiro128** to draw. A fixed
// algorithm, not Math.random, so results match across machines and Node versions.

/** One SplitMix32 step: advances `state.s` and returns a well-mixed 32-bit unsigned integer. */
export function splitmix32(state: { s: number }): number {
  let z = (state.s = (state.s + 0x9e3779b9) | 0);
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** xoshiro128** over four 32-bit words; subclasses decide how a seed becomes those words. */
export class Xoshiro128StarStar {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** Seeds the four words from successive SplitMix32 outputs of `state` (never all zero). */
  protected constructor(state: { s: number }) {
    this.a = splitmix32(state);
    this.b = splitmix32(state);
    this.c = splitmix32(state);
    this.d = splitmix32(state);
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }
}
