// A small seeded random source for workloads. Workloads must be reproducible from --seed alone, across
// machines and Node versions, so we use a fixed algorithm (SplitMix32 seeding a xoshiro128**) rather
// than Math.random.
import { Xoshiro128StarStar } from '../util/xoshiro128.js';

export class SeededRng extends Xoshiro128StarStar {
  /** Second normal variate of the last Box-Muller pair, handed out on the next call. */
  private spareNormal: number | undefined;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
    super({ s: Math.trunc(seed) | 0 });
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** Standard normal variate (Box-Muller). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const z = this.spareNormal;
      this.spareNormal = undefined;
      return z;
    }
    // 1 - next() lies in (0, 1], so the log is finite.
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Exponential variate with the given rate (mean 1/rate): gaps of a Poisson process. */
  exponential(rate: number): number {
    return -Math.log(1 - this.next()) / rate;
  }
}
