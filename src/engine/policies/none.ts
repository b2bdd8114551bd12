// No batching: one request at a time (its n completions together), the slowest baseline. It is a
// static batch of one that never waits for company.

import { StaticPolicy } from './static.js';

export class NonePolicy extends StaticPolicy {
  constructor(dropFinished: boolean) {
    super(1, 0, dropFinished);
  }
}
