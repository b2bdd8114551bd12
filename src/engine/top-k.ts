// Top-k selection without sorting the vocabulary: for sampling's top-k and the top logprobs.

/**
 * The k largest entries of `x` (NaN and -Infinity excluded), written to out[0..n) largest first,
 * lower index first among equals; returns n <= k. A k-sized min-heap: O(V log k), and most
 * entries are rejected by one comparison with the heap's smallest.
 */
export function selectTopK(x: Float32Array, k: number, out: Int32Array): number {
  if (k <= 0) return 0;
  // "a is worse than b": smaller value, or equal value and higher id.
  const worse = (a: number, b: number): boolean => x[a] < x[b] || (x[a] === x[b] && a > b);
  const siftDown = (i: number, size: number): void => {
    const id = out[i];
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && worse(out[child + 1], out[child])) child++;
      if (!worse(out[child], id)) break;
      out[i] = out[child];
      i = child;
    }
    out[i] = id;
  };
  let size = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    if (!(xi > -Infinity)) continue;
    if (size < k) {
      // Sift up: ids arrive in increasing order, so among equal values the newcomer is the worse.
      let j = size++;
      while (j > 0) {
        const parent = (j - 1) >> 1;
        if (!worse(i, out[parent])) break;
        out[j] = out[parent];
        j = parent;
      }
      out[j] = i;
    } else if (xi > x[out[0]]) {
      out[0] = i;
      siftDown(0, size);
    }
  }
  // Heap sort: move the worst to the end repeatedly, leaving the best at the front.
  for (let end = size - 1; end > 0; end--) {
    const t = out[0];
    out[0] = out[end];
    out[end] = t;
    siftDown(0, end);
  }
  return size;
}
