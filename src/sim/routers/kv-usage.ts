// KV-usage: the replica whose KV cache is least full (GIE's KV-cache utilisation scorer), ties by
// queue. KV use follows the tokens a replica holds rather than the requests it counts, so it weighs a
// replica serving a few long contexts as busier than one serving many short ones.
import { argminFrom, queueKey, TieCursor } from './least-queue.js';
import type { ReplicaView, Router } from './router.js';

export class KvUsageRouter implements Router {
  readonly name = 'kv-usage';
  private readonly cursor = new TieCursor();

  route(_req: unknown, replicas: readonly ReplicaView[]): number {
    const start = this.cursor.take(replicas.length);
    let lowest = Infinity;
    for (const r of replicas) lowest = Math.min(lowest, r.kvUsage);
    return argminFrom(replicas, start, queueKey, (r) => r.kvUsage === lowest);
  }
}
