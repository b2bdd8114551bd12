// What `stepwise bench` and `stepwise simulate` write after their tables: the report folder (--out)
// and the results JSON (--json), each announced on `out`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export interface RunOutputs {
  /** --out: writes the HTML + Markdown + JSON report into the folder and returns the files. */
  writeReport(dir: string): Promise<{ html: string; markdown: string; json: string }>;
  /** --json: the results as one JSON value. */
  resultsJson(): unknown;
}

export async function writeRunOutputs(values: { out?: string; json?: string }, out: { write(s: string): unknown }, o: RunOutputs): Promise<void> {
  if (values.out) {
    const files = await o.writeReport(resolve(values.out));
    out.write(`\nreport: ${files.html}\n        ${files.markdown}\n        ${files.json}\n`);
  }
  if (values.json) {
    const file = resolve(values.json);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(o.resultsJson(), null, 2) + '\n');
    if (!values.out) out.write(`\nresults: ${file}\n`);
  }
}
