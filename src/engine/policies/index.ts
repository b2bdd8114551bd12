// The batching policy the options name.

import { ContinuousPolicy } from './continuous.js';
import { NonePolicy } from './none.js';
import type { BatchPolicy } from './policy.js';
import { StaticPolicy } from './static.js';
import type { SchedulerOptions } from '../scheduler-options.js';

export function createPolicy(o: Readonly<SchedulerOptions>): BatchPolicy {
  if (o.policy === 'continuous') return new ContinuousPolicy();
  if (o.policy === 'static') return new StaticPolicy(o.staticBatchSize, o.staticWaitMs, o.staticDropFinished);
  return new NonePolicy(o.staticDropFinished);
}
