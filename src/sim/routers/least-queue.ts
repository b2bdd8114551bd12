// Least-queue: the replica with the fewest waiting requests, then the fewest running ones — GIE's
// queue scorer. Ties are broken by a cursor that moves on with every request, so equally loaded
// replicas take turns instead of the first one taking everything.
import type { ReplicaView, Router } from './router.js';

/** Load as the queue scorer orders it: waiting first, running to break ties. */
export function queueKey(r: ReplicaView): number {
  // Running requests are bounded by max-num-seqs (far below 2^20), so one number orders both.
  return r.numWaiting * 1_048_576 + r.numRunning;
}

/**
 * The index of the replica with the smallest key among those `eligible` allows, scanning from
 * `start` so that ties go to the first one at or after it (-1 when none is eligible).
 */
export function argminFrom(replicas: readonly ReplicaView[], start: number, key: (r: ReplicaView) => number, eligible?: (r: ReplicaView) => boolean): number {
  const n = replicas.length;
  let best = -1;
  let bestKey = Infinity;
  for (let j = 0; j < n; j++) {
    const r = replicas[(start + j) % n];
    if (eligible && !eligible(r)) continue;
    const k = key(r);
    if (k < bestKey) {
      bestKey = k;
      best = r.index;
    }
  }
  return best;
}

/** A cursor that moves one replica on per request: where tie-breaking scans start. */
export class TieCursor {
  private next = 0;

  take(n: number): number {
    const k = this.next % n;
    this.next = k + 1;
    return k;
  }
}

export class LeastQueueRouter implements Router {
  readonly name = 'least-queue';
  private readonly cursor = new TieCursor();

  route(_req: unknown, replicas: readonly ReplicaView[]): number {
    return argminFrom(replicas, this.cursor.take(replicas.length), queueKey);
  }
}
