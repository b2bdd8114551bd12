// Prefix-affinity: the replica whose prefix cache already holds the longest prefix of the prompt, so
// it computes only the rest — llm-d's prefix-cache scorer, in its precise form (what the replica's KV
// cache holds now, as KV events report it, not a guess from past routing). Alone it would pile every
// request of a popular prefix onto one replica, so, as llm-d pairs it with a queue scorer, replicas
// loaded more than `maxImbalance` requests beyond the least-loaded one are filtered out first; with
// no cache hit among the rest, the request goes where least-queue would send it.
import { PromptProbe, type SimRequest } from '../replica.js';
import { argminFrom, queueKey, TieCursor } from './least-queue.js';
import type { ReplicaView, Router } from './router.js';

/** Default for maxImbalance: how many more requests (waiting + running) a cache hit may cost. */
export const DEFAULT_AFFINITY_MAX_IMBALANCE = 16;

/** Requests on a replica, waiting or running: what the overload filter compares. */
function load(r: ReplicaView): number {
  return r.numWaiting + r.numRunning;
}

export class PrefixAffinityRouter implements Router {
  readonly name = 'prefix-affinity';
  private readonly cursor = new TieCursor();

  constructor(readonly maxImbalance = DEFAULT_AFFINITY_MAX_IMBALANCE) {
    if (!(Number.isInteger(maxImbalance) && maxImbalance >= 0)) throw new RangeError(`maxImbalance must be an integer >= 0, got ${maxImbalance}`);
  }

  route(req: SimRequest, replicas: readonly ReplicaView[]): number {
    const start = this.cursor.take(replicas.length);
    let least = Infinity;
    for (const r of replicas) least = Math.min(least, load(r));
    const limit = least + this.maxImbalance;
    const probe = new PromptProbe(req.promptTokenIds);
    // Hit lengths of the replicas within the limit; a longer hit wins, a shorter queue breaks ties.
    const hits = new Array<number>(replicas.length).fill(-1);
    let longest = 0;
    for (const r of replicas) {
      if (load(r) > limit) continue;
      const h = r.cachedPrefixTokens(probe);
      hits[r.index] = h;
      if (h > longest) longest = h;
    }
    if (longest === 0) return argminFrom(replicas, start, queueKey);
    return argminFrom(replicas, start, queueKey, (r) => hits[r.index] === longest);
  }
}
