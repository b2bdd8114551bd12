// The one error type model-file code throws for bad input: a missing, truncated, corrupt or
// unsupported file. Callers (CLI, server) print its message as is, so every message names the file
// and what exactly is wrong with it.

export class ModelFileError extends Error {
  override name = 'ModelFileError';

  constructor(
    /** The file the problem is in. */
    readonly path: string,
    /** What is wrong, without the path (it is prefixed here). */
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${problem}`, options);
  }
}
