// A mistake in how a command was called. main.ts prints its message (no stack trace) and exits 2.
export class UsageError extends Error {
  override name = 'UsageError';
}
