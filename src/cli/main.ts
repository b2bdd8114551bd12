// `stepwise <command> [flags]`: dispatches to one module per command. Commands return an exit code;
// expected mistakes (bad flags, missing files, bad model files) print one clear line, never a stack trace.
import { UsageError } from './usage-error.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<(argv: string[]) => Promise<number>> }> = {
  generate: { summary: 'generate text (or token ids) from a prompt', load: async () => (await import('./generate.js')).runGenerate },
  serve: { summary: 'run the OpenAI-compatible HTTP server', load: async () => (await import('./serve.js')).runServe },
  bench: { summary: 'benchmark batching policies (and llama.cpp) on a workload', load: async () => (await import('./bench.js')).runBench },
  simulate: { summary: 'simulate the scheduler against a hardware cost model', load: async () => (await import('./simulate.js')).runSimulate },
  calibrate: { summary: 'measure this machine and write a cost-model profile', load: async () => (await import('./calibrate.js')).runCalibrate },
  'make-model': { summary: 'write a deterministic random-weight GGUF model', load: async () => (await import('./make-model.js')).runMakeModel },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'Stepwise: an LLM inference engine built around continuous batching.',
    '',
    'Usage: stepwise <command> [options]     (stepwise <command> --help for its options)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage() + '\n');
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v') {
    const { createRequire } = await import('node:module');
    const { existsSync } = await import('node:fs');
    // dist/src/cli/main.js is three folders below the package root, src/cli/main.ts two.
    const req = createRequire(import.meta.url);
    const rel = ['../../../package.json', '../../package.json'].find((p) => existsSync(new URL(p, import.meta.url)))!;
    const pkg = req(rel) as { version: string };
    // The kernels this machine would use: the native variant its CPU runs, or why there is none.
    const { nativeUnavailableReason, createNativeKernels } = await import('../model/kernels/native.js');
    const reason = nativeUnavailableReason();
    let kernels = `typescript (${reason})`;
    if (reason === null) {
      const k = createNativeKernels({ threads: 1 });
      kernels = `native-${k.simd}`;
      k.close();
    }
    process.stdout.write(`${pkg.version}\nkernels: ${kernels}\n`);
    return 0;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`stepwise: unknown command '${command}'\n\n${usage()}\n`);
    return 2;
  }
  try {
    return await (await entry.load())(rest);
  } catch (err) {
    return reportError(err);
  }
}

/** Prints an error the way a user should see it: one line, no stack, unless STEPWISE_DEBUG is set. */
export function reportError(err: unknown): number {
  const e = err as Error & { code?: string };
  if (process.env.STEPWISE_DEBUG) process.stderr.write(`${e?.stack ?? e}\n`);
  else process.stderr.write(`stepwise: ${e?.message ?? String(err)}\n`);
  if (err instanceof UsageError || e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return 2;
  return 1;
}
