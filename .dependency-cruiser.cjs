// Stepwise's import rules, checked by dependency-cruiser (test/architecture/import-rules.test.ts
// runs it from `npm test`). docs/architecture.md ("What may import what") draws the same picture.
//
//   src/cli, src/server, src/bench  ->  src/llm.ts, src/engine, src/model, src/sim, src/runs
//   src/sim                         ->  the scheduler side of src/engine, src/runs, src/util
//   src/runs                        ->  the engine's step trace and types, src/util
//   src/engine                      ->  src/model (through the runner, sampling and output processing)
//   src/model                       ->  src/model/kernels
//   src/model/kernels, src/util     ->  nothing above them
//
// Type-only imports count like any other: a type is part of what a module depends on.

/**
 * The scheduler and its KV cache manager: everything the simulator drives without a model (with the
 * scheduler's half of speculative decoding, and the plain description of an output constraint).
 */
const SCHEDULER_SIDE =
  '^src/engine/(scheduler|scheduler-options|scheduler-stats|engine-options|request-checks|request-errors|stop-check|step-plan|step-trace|sequence|kv-cache-manager|block-pool|counter-rng|types|speculation|ranked-list)\\.ts$|^src/engine/structured/constraint\\.ts$|^src/engine/policies/';

module.exports = {
  forbidden: [
    {
      name: 'engine-not-above',
      comment: 'The engine does not import the server, the benchmarks, the CLI, the simulator, the shared run results or llm.ts.',
      severity: 'error',
      from: { path: '^src/engine/' },
      to: { path: '^src/(server|bench|cli|sim|runs)/|^src/llm\\.ts$' },
    },
    {
      name: 'model-not-engine',
      comment: 'The model does not import the engine (or anything above it).',
      severity: 'error',
      from: { path: '^src/model/' },
      to: { path: '^src/(engine|server|bench|cli|sim|runs)/|^src/llm\\.ts$' },
    },
    {
      name: 'scheduler-not-model',
      comment: 'The scheduler and the KV cache manager never touch the model, its kernels or tokenizers, nor the runner and output side of the engine.',
      severity: 'error',
      from: { path: SCHEDULER_SIDE },
      to: {
        path: '^src/',
        pathNot: [SCHEDULER_SIDE, '^src/util/'],
      },
    },
    {
      name: 'kernels-not-above',
      comment: 'Kernels (and the tensor formats they read) import nothing above them.',
      severity: 'error',
      from: { path: '^src/model/kernels/' },
      to: { path: '^src/', pathNot: '^src/model/kernels/' },
    },
    {
      name: 'sim-only-scheduler-and-runs',
      comment: 'The simulator drives the scheduler alone: no loaders, kernels, model, runner, server, CLI, benchmarks or llm.ts.',
      severity: 'error',
      from: { path: '^src/sim/' },
      to: { path: '^src/', pathNot: [SCHEDULER_SIDE, '^src/(sim|runs|util)/'] },
    },
    {
      name: 'runs-neutral',
      comment: 'What the benchmark and the simulator share depends on neither of them, nor on the model.',
      severity: 'error',
      from: { path: '^src/runs/' },
      to: { path: '^src/', pathNot: ['^src/(runs|util)/', '^src/engine/(step-trace|types)\\.ts$'] },
    },
    {
      name: 'util-leaf',
      comment: 'src/util is shared arithmetic below everything.',
      severity: 'error',
      from: { path: '^src/util/' },
      to: { path: '^src/', pathNot: '^src/util/' },
    },
    {
      name: 'cli-on-top',
      comment: 'Only the CLI imports the CLI.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'no-circular',
      comment: 'Modules import each other in one direction only.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
