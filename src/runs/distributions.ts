// Length distributions of synthetic workloads (prompt and output lengths, in tokens), written on the
// command line as `kind:params`:
//   fixed:128                      always 128
//   uniform:32,512                 integers 32..512, all equally likely
//   normal:256,64[,min,max]        mean 256, standard deviation 64, clipped to [min, max] (default 1..inf)
//   lognormal:128,1.0[,min,max]    median 128, sigma 1.0 of the underlying normal: a long tail of
//                                  long outputs, the shape real chat outputs have
import type { SeededRng } from './rng.js';
import { WorkloadError } from './errors.js';

export type LengthDistribution =
  | { kind: 'fixed'; value: number }
  | { kind: 'uniform'; min: number; max: number }
  | { kind: 'normal'; mean: number; std: number; min: number; max: number }
  | { kind: 'lognormal'; median: number; sigma: number; min: number; max: number };

/** Draws one length (an integer >= 1). */
export function sampleLength(d: LengthDistribution, rng: SeededRng): number {
  switch (d.kind) {
    case 'fixed':
      return d.value;
    case 'uniform':
      return rng.int(d.min, d.max);
    case 'normal':
      return clampRound(d.mean + d.std * rng.normal(), d.min, d.max);
    case 'lognormal':
      return clampRound(d.median * Math.exp(d.sigma * rng.normal()), d.min, d.max);
  }
}

function clampRound(x: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Math.round(x)));
}

/** Parses `kind:params` (see the file comment). `what` names the flag in error messages. */
export function parseDistribution(spec: string, what: string): LengthDistribution {
  const m = /^\s*([a-z]+)\s*:\s*(.*)$/i.exec(spec);
  if (!m) throw new WorkloadError(`${what}: expected kind:params such as uniform:32,512, got '${spec}'`);
  const kind = m[1].toLowerCase();
  const nums = m[2].split(/[,\s]+/).filter((s) => s !== '').map((s) => Number(s));
  if (nums.some((x) => !Number.isFinite(x))) throw new WorkloadError(`${what}: parameters must be numbers, got '${m[2]}'`);
  const arity = (lo: number, hi: number, usage: string) => {
    if (nums.length < lo || nums.length > hi) throw new WorkloadError(`${what}: ${kind} takes ${usage}, got '${spec}'`);
  };
  let d: LengthDistribution;
  switch (kind) {
    case 'fixed':
      arity(1, 1, 'one length (fixed:128)');
      d = { kind, value: nums[0] };
      break;
    case 'uniform':
      arity(2, 2, 'min,max (uniform:32,512)');
      d = { kind, min: nums[0], max: nums[1] };
      break;
    case 'normal':
      arity(2, 4, 'mean,std[,min,max] (normal:256,64)');
      d = { kind, mean: nums[0], std: nums[1], min: nums[2] ?? 1, max: nums[3] ?? Number.MAX_SAFE_INTEGER };
      break;
    case 'lognormal':
      arity(2, 4, 'median,sigma[,min,max] (lognormal:128,1.0,16,1024)');
      d = { kind, median: nums[0], sigma: nums[1], min: nums[2] ?? 1, max: nums[3] ?? Number.MAX_SAFE_INTEGER };
      break;
    default:
      throw new WorkloadError(`${what}: unknown distribution '${kind}' (use fixed, uniform, normal or lognormal)`);
  }
  validateDistribution(d, what);
  return d;
}

/** Throws a WorkloadError when a distribution cannot produce positive integer lengths. */
export function validateDistribution(d: LengthDistribution, what: string): void {
  const posInt = (x: number, name: string) => {
    if (!Number.isInteger(x) || x < 1) throw new WorkloadError(`${what}: ${name} must be a positive integer, got ${x}`);
  };
  switch (d.kind) {
    case 'fixed':
      posInt(d.value, 'length');
      return;
    case 'uniform':
    case 'normal':
    case 'lognormal':
      posInt(d.min, 'min');
      if (d.max !== Number.MAX_SAFE_INTEGER) posInt(d.max, 'max');
      if (d.min > d.max) throw new WorkloadError(`${what}: min ${d.min} is above max ${d.max}`);
      if (d.kind === 'normal' && !(d.std >= 0)) throw new WorkloadError(`${what}: std must be >= 0, got ${d.std}`);
      if (d.kind === 'normal' && !(d.mean > 0)) throw new WorkloadError(`${what}: mean must be > 0, got ${d.mean}`);
      if (d.kind === 'lognormal' && !(d.median > 0)) throw new WorkloadError(`${what}: median must be > 0, got ${d.median}`);
      if (d.kind === 'lognormal' && !(d.sigma >= 0)) throw new WorkloadError(`${what}: sigma must be >= 0, got ${d.sigma}`);
      return;
  }
}

/** The distribution in the same `kind:params` spelling parseDistribution reads. */
export function describeDistribution(d: LengthDistribution): string {
  const bounds = (min: number, max: number) => (max === Number.MAX_SAFE_INTEGER ? (min === 1 ? '' : `,${min}`) : `,${min},${max}`);
  switch (d.kind) {
    case 'fixed':
      return `fixed:${d.value}`;
    case 'uniform':
      return `uniform:${d.min},${d.max}`;
    case 'normal':
      return `normal:${d.mean},${d.std}${bounds(d.min, d.max)}`;
    case 'lognormal':
      return `lognormal:${d.median},${d.sigma}${bounds(d.min, d.max)}`;
  }
}
