// Top-p without top-k for sampling.ts: the nucleus found by a quickselect over the candidates
// weights, in the sampler's scratch arrays (weight by token id; order receives the nucleus).

/**
 * Top-p without top-k: the smallest set of most likely tokens whose mass reaches topP × total,
 * found by a quickselect that partitions on weight and keeps the mass of each side, so it costs
 * O(V) on average instead of a full sort (flat distributions have nuclei of thousands of tokens).
 * Writes the nucleus to order[0..n), in no particular but deterministic order; returns its mass.
 */
export function nucleus(weight: Float64Array, order: Int32Array, topP: number, total: number, v: number): [n: number, mass: number] {
  const heavier = (a: number, b: number): boolean => heavierOf(weight, a, b);
  let hi = 0;
  for (let i = 0; i < v; i++) if (weight[i] > 0) order[hi++] = i;
  const target = topP * total;
  // order[0..lo) is in the nucleus; the boundary lies in order[lo..hi); the rest is out.
  let lo = 0;
  let kept = 0;
  while (hi - lo > 16) {
    const pivot = medianOfThree(order, heavier, lo, (lo + hi) >> 1, hi - 1);
    let split = lo;
    let heavyMass = 0;
    for (let i = lo; i < hi; i++) {
      const id = order[i];
      if (id !== pivot && heavier(id, pivot)) {
        order[i] = order[split];
        order[split++] = id;
        heavyMass += weight[id];
      }
    }
    if (kept + heavyMass >= target) {
      hi = split; // the heavier side alone completes the nucleus
      continue;
    }
    // Everything heavier is in, then the pivot itself.
    kept += heavyMass + weight[pivot];
    const at = order.indexOf(pivot, split);
    order[at] = order[split];
    order[split] = pivot;
    lo = split + 1;
    if (kept >= target) return [lo, kept];
  }
  // A few candidates left: sort them most likely first and take until the mass is reached.
  for (let i = lo + 1; i < hi; i++) {
    const id = order[i];
    let j = i;
    while (j > lo && heavier(id, order[j - 1])) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = id;
  }
  while (lo < hi) {
    kept += weight[order[lo++]];
    if (kept >= target) break;
  }
  return [lo, kept];
}

/** The id, among order[a], order[b], order[c], that is neither the heaviest nor the lightest. */
function medianOfThree(order: Int32Array, heavier: (a: number, b: number) => boolean, a: number, b: number, c: number): number {
  let x = order[a];
  let y = order[b];
  const z = order[c];
  if (heavier(x, y)) [x, y] = [y, x]; // now x is the lighter of the two
  if (heavier(z, y)) return y;
  return heavier(z, x) ? z : x;
}

/** Candidate order for top-p: larger weight first, lower id first among equal weights. */
function heavierOf(weight: Float64Array, a: number, b: number): boolean {
  const wa = weight[a];
  const wb = weight[b];
  return wa > wb || (wa === wb && a < b);
}
