// The preamble every command shares: strict flag parsing (no positionals, unknown flags rejected)
// and --help, which prints the command's usage instead of running it.
import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

const HELP_FLAG = { help: { type: 'boolean', short: 'h' } } as const;

type Flags<O extends OptionSpecs> = ReturnType<typeof parseArgs<{ args: string[]; strict: true; allowPositionals: false; options: O & typeof HELP_FLAG }>>['values'];

/** The command's flags, or undefined when --help was given (the usage has then been written to `out`). */
export function parseCommandFlags<O extends OptionSpecs>(argv: string[], options: O, usage: string, out: { write(s: string): unknown } = process.stdout): Flags<O> | undefined {
  const { values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: { ...HELP_FLAG, ...options } });
  if ((values as { help?: boolean }).help) {
    out.write(usage + '\n');
    return undefined;
  }
  return values as Flags<O>;
}
