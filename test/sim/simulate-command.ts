// `stepwise simulate` run in process for the CLI tests: its exit code, stdout and stderr as strings.
import { runSimulate } from '../../src/cli/simulate.js';

export async function simulateCommand(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runSimulate(args, { write: (s: string) => (out += s) }, { write: (s: string) => (err += s) });
  return { code, out, err };
}
