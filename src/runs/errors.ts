// Errors of workloads and datasets. Each names what was wrong, so the CLI can print one clear line.

/** A workload specification that cannot be built (bad distribution, impossible lengths, ...). */
export class WorkloadError extends Error {
  override name = 'WorkloadError';
}

/** A dataset file that is missing or not in the expected (ShareGPT) shape. */
export class DatasetError extends Error {
  override name = 'DatasetError';
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}
