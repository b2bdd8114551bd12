// Round-robin: each request to the next replica in turn, blind to their state — what a plain
// Kubernetes Service in front of the replicas amounts to. The baseline the other routers must beat.
import type { ReplicaView, Router } from './router.js';

export class RoundRobinRouter implements Router {
  readonly name = 'round-robin';
  private next = 0;

  route(_req: unknown, replicas: readonly ReplicaView[]): number {
    const k = this.next % replicas.length;
    this.next = k + 1;
    return k;
  }
}
